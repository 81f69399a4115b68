"""The CDN topology on loopback: vid origins behind stock-nginx edges (nginx-conf/edge.conf).

Two origins (nginx + vid, with an access log) and two edges (the same nginx binary, no
vid module, rendered by scripts/render-edge.sh). Checked with real players (ffmpeg's HLS
demuxer), curl over HTTP/2 + TLS, and an asyncio LL-HLS client that behaves like hls.js
in low-latency mode (blocking playlist reload + the preload-hinted part).
"""

import asyncio
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (DEBIAN_FFMPEG, NGINX, ROOT, free_port, parse_playlist, publish,
                      wait_for)

TD = 1  # the origins' target duration (conftest Vid: hls_live_segment 1s, part 200ms)
CURL = shutil.which("curl")


# --- edges -----------------------------------------------------------------------------

class Edge:
    """One edge: build/sbin/nginx with the rendered edge.conf."""

    def __init__(self, origins, name="edge1", workers=1, td=TD):
        self.prefix = Path(tempfile.mkdtemp(prefix="vid-edge-"))
        os.chmod(self.prefix, 0o755)  # workers run as nobody when the tests run as root
        self.http_port, self.https_port = free_port(), free_port()
        self.name = name
        self.origins = origins
        env = dict(os.environ, EDGE_TD=str(td), EDGE_NAME=name, EDGE_WORKERS=str(workers))
        subprocess.run([str(ROOT / "scripts" / "render-edge.sh"), str(self.prefix), str(self.http_port),
                        str(self.https_port), *[f"127.0.0.1:{o.http_port}" for o in origins]],
                       check=True, env=env, capture_output=True, text=True)
        self.proc = None

    def nginx(self, *args, check=True):
        return subprocess.run([str(NGINX), "-p", str(self.prefix), "-c", "conf/nginx.conf", "-e", "logs/error.log", *args],
                              capture_output=True, text=True, check=check, timeout=30)

    def start(self):
        self.proc = subprocess.Popen([str(NGINX), "-p", str(self.prefix), "-c", "conf/nginx.conf", "-e", "logs/error.log",
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"edge exited: {self.proc.stderr.read().decode()}\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, 10, what="edge to listen")
        return self

    def worker_pids(self):
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(self.proc.pid)], capture_output=True, text=True).stdout
        return sorted(int(l.split()[0]) for l in out.splitlines() if "worker process" in l and "shutting down" not in l)

    def all_worker_pids(self):
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(self.proc.pid)], capture_output=True, text=True).stdout
        return sorted(int(l.split()[0]) for l in out.splitlines() if "worker process" in l)

    def url(self, path, tls=False):
        if tls:
            return f"https://127.0.0.1:{self.https_port}{path}"
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path, **kw):
        from conftest import http

        return http(self.url(path), **kw)

    def access_log(self):
        p = self.prefix / "logs" / "edge.access.log"
        return p.read_text(errors="replace").splitlines() if p.exists() else []

    def fetch_log(self):
        p = self.prefix / "logs" / "edge.fetch.log"
        return p.read_text(errors="replace").splitlines() if p.exists() else []

    def log(self):
        p = self.prefix / "logs" / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def first_origin(self, key):
        """The origin the consistent hash picks for KEY (the first one tried), found with a
        request for a file no origin has."""
        r = self.get(f"/live/{key}/init0.mp4")
        assert r.status == 404
        line = wait_for(lambda: next((l for l in reversed(self.fetch_log()) if f"/live/{key}/init0.mp4" in l), None),
                        5, what="fetch log line")
        first = re.search(r"upstream=127\.0\.0\.1:(\d+)", line).group(1)
        return next(o for o in self.origins if str(o.http_port) == first)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def edge_factory():
    made = []

    def make(origins, **kw):
        e = Edge(origins, **kw).start()
        made.append(e)
        return e

    yield make
    for e in made:
        e.stop()
        log = e.log()
        shutil.rmtree(e.prefix, ignore_errors=True)
        assert not re.search(r"\[(alert|emerg|crit)\]|exited on signal", log), log[-4000:]


@pytest.fixture
def topology(vid_factory, edge_factory):
    """Origins A and B (access logs on), edges 1 (2 workers) and 2."""
    a = vid_factory(access_log=True)
    b = vid_factory(access_log=True)
    e1 = edge_factory([a, b], name="edge1", workers=2)
    e2 = edge_factory([a, b], name="edge2")
    return a, b, e1, e2


def key_on(edge, origin, prefix):
    """A stream key whose hash points EDGE at ORIGIN first."""
    for i in range(64):
        key = f"{prefix}{i}"
        if edge.first_origin(key) is origin:
            return key
    raise AssertionError("no key hashes to that origin")


def kill_origin(vid):
    """A crash: SIGKILL to the master and to every worker."""
    pids = vid.worker_pids()
    vid.proc.kill()
    vid.proc.wait()
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def edge_playlist(edge, key, segments=2, timeout=25, tls=False):
    def ready():
        r = edge.get(f"/live/{key}/index.m3u8")
        if r.status == 200:
            pl = parse_playlist(r.text)
            if len(pl["segments"]) >= segments and not pl.get("endlist"):
                return pl
        return None

    return wait_for(ready, timeout, step=0.25, what=f"{key} through {edge.name}")


def ffmpeg_play(url, seconds=4, timeout=60):
    return subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", url, "-t", str(seconds), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=timeout)


def curl(*args):
    out = subprocess.run([CURL, "-sk", "--http2", "-D", "-", *args], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    return lines[0], headers, body


# --- an LL-HLS client like hls.js ------------------------------------------------------

HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"')


class Conn:
    """One HTTP/1.1 keep-alive connection. A request on a reused connection that the
    server closed before sending anything is retried once, as browsers do for idempotent
    requests (RFC 9112 §9.3.1); such retries are counted."""

    def __init__(self, port, stats):
        self.port, self.stats = port, stats
        self.r = self.w = None
        self.used = False

    def close(self):
        if self.w:
            self.w.close()
        self.r = self.w = None

    async def get(self, path, timeout=15):
        for attempt in (0, 1):
            if self.w is None:
                self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
                self.used = False
            reused = self.used
            try:
                self.w.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\nUser-Agent: vid-llhls-test\r\n\r\n".encode())
                await self.w.drain()
                head = await asyncio.wait_for(self.r.readuntil(b"\r\n\r\n"), timeout)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if reused and attempt == 0:
                    self.stats["retries"] += 1
                    continue
                raise
            self.used = True
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            hdr = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                hdr[k.strip().lower()] = v.strip()
            n = int(hdr.get("content-length", "0"))
            body = await asyncio.wait_for(self.r.readexactly(n), timeout)
            if hdr.get("connection", "").lower() == "close":
                self.close()
            self.stats["requests"] += 1
            self.stats["bytes"] += len(body)
            return status, hdr, body


async def viewer(port, key, seconds, stats, got, go):
    """Follows the live edge: a blocking playlist reload for the next part
    (_HLS_msn/_HLS_part from the preload hint) and a GET of the hinted part, together."""
    pl, pt = Conn(port, stats), Conn(port, stats)
    base = f"/live/{key}/"
    try:
        await go.wait()
        status, _, body = await pl.get(base + "index.m3u8")
        assert status == 200, status
        m = HINT.search(body.decode())
        end = time.monotonic() + seconds
        while m and time.monotonic() < end:
            msn, part = m.groups()
            (s1, h1, b1), (s2, h2, b2) = await asyncio.gather(
                pl.get(f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}"), pt.get(f"{base}{msn}.{part}.m4s"))
            if s1 != 200 or s2 != 200 or "age" not in h1 or "age" not in h2:
                stats["errors"].append((msn, part, s1, s2, h1.get("age"), h2.get("age")))
                return
            got.setdefault((int(msn), int(part)), []).append(time.monotonic())
            m = HINT.search(b1.decode())
    except Exception as e:  # reported by the test
        stats["errors"].append(repr(e))
    finally:
        pl.close()
        pt.close()


def run_viewers(port, key, n, seconds):
    """N viewers for SECONDS; returns (stats, {(msn, part): [arrival times]})."""
    stats = {"requests": 0, "bytes": 0, "retries": 0, "errors": []}
    got = {}

    async def main():
        go = asyncio.Event()
        tasks = [asyncio.create_task(viewer(port, key, seconds, stats, got, go)) for _ in range(n)]
        await asyncio.sleep(0.05)
        go.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    return stats, got


def origin_lines(vid, edge):
    """(uri, status, bytes) of the origin's requests that came from EDGE."""
    out = []
    for l in vid.access_log():
        m = re.match(r'\S+ "([^"]+)" (\d+) (\d+) \S+ edge=(\S+)', l)
        if m and m.group(4) == edge.name:
            out.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return out


# --- tests -----------------------------------------------------------------------------

def test_edge_config_renders_and_scales(tmp_path):
    # The committed Age maps are what the generator makes.
    gen = subprocess.run([str(ROOT / "scripts" / "cdn_age_maps.sh")], capture_output=True, text=True, check=True)
    assert gen.stdout == (ROOT / "nginx-conf" / "edge-age.conf").read_text()
    confs = {}
    for td in (1, 2, 6):
        p = tmp_path / f"td{td}"
        env = dict(os.environ, EDGE_TD=str(td))
        subprocess.run([str(ROOT / "scripts" / "render-edge.sh"), str(p), "8090", "8443",
                        "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], check=True, env=env, capture_output=True)
        t = subprocess.run([str(NGINX), "-p", str(p), "-c", "conf/nginx.conf", "-e", "logs/error.log", "-t"],
                           capture_output=True, text=True)
        assert t.returncode == 0, t.stderr
        confs[td] = (p / "conf" / "nginx.conf").read_text()
    # Lifetimes and timeouts follow the target duration; the origin's hold limit is 3 TD.
    for td, conf in confs.items():
        assert f"proxy_cache_valid 200 {max(1, -(-td // 2))}s;" in conf
        assert f"proxy_cache_valid 404 410 {4 * td}s;" in conf
        assert conf.count(f"proxy_cache_valid 200 {6 * td}s;") == 2
        assert f"proxy_cache_lock_timeout {3 * td + 4}s;" in conf
        assert f"proxy_next_upstream_timeout {td + 1}s;" in conf
        assert "proxy_next_upstream_tries 3;" in conf
    assert "listen 127.0.0.1:8443 ssl;" in confs[1]


def test_play_through_edges(topology):
    a, b, e1, e2 = topology
    # A stream that lives on B although the hash sends edge 1 to A first.
    key = key_on(e1, a, "onb")
    pub = publish(b.rtmp_url(key), seconds=25)
    try:
        edge_playlist(e1, key, segments=2)
        # ffmpeg's HLS demuxer over TLS through edge 1, and over plain HTTP through edge 2.
        for url in (e1.url(f"/live/{key}/index.m3u8", tls=True), e2.url(f"/live/{key}/index.m3u8")):
            play = ffmpeg_play(url)
            assert play.returncode == 0 and play.stderr.strip() == "", (url, play.stderr)
        # Edge 1 found the stream on B after A's 404.
        tried = [l for l in e1.fetch_log() if f"/live/{key}/index.m3u8" in l and '" 200 ' in l]
        assert tried and all("ustatus=404, 200" in l for l in tried), tried[:3]

        # HTTP/2 + TLS, gzip, Age, cache status.
        status, h, body = curl("--compressed", "-H", "Accept-Encoding: gzip", e1.url(f"/live/{key}/index.m3u8", tls=True))
        assert status.startswith("HTTP/2 200"), status
        assert h["content-type"] == "application/vnd.apple.mpegurl"
        assert h.get("content-encoding") == "gzip" and "age" in h and "x-cache" in h, h
        text = body.decode()
        assert text.startswith("#EXTM3U") and "#EXT-X-PART:" in text
        hint = HINT.search(text)
        last_part = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', text)[-1]
        status, h, body = curl(e1.url(f"/live/{key}/{last_part}", tls=True))
        assert status.startswith("HTTP/2 200") and h["content-type"] == "video/mp4" and "age" in h and len(body) > 0
        # A blocking reload for the hinted part, then the part itself.
        msn, part = hint.groups()
        t0 = time.monotonic()
        status, h, body = curl("--compressed", e1.url(f"/live/{key}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}", tls=True))
        assert status.startswith("HTTP/2 200") and f'URI="{msn}.{part}.m4s"' in body.decode(), body[-400:]
        assert time.monotonic() - t0 < 3 * TD
        status, h, body = curl(e1.url(f"/live/{key}/{msn}.{part}.m4s", tls=True))
        assert status.startswith("HTTP/2 200") and len(body) > 0 and "age" in h

        # Cache key: junk dropped, order and leading zeros normalised.
        r1 = e2.get(f"/live/{key}/index.m3u8?_HLS_msn={msn}&x=1&_HLS_part={part}")
        r2 = e2.get(f"/live/{key}/index.m3u8?_HLS_part={part}&_HLS_msn=0{msn}&utm=2")
        assert r1.status == r2.status == 200 and r2.headers["X-Cache"] == "HIT" and r1.body == r2.body
        # The access log line is written when the request ends, maybe just after the answer.
        key_line = wait_for(lambda: next((l for l in reversed(e2.access_log()) if "utm=2" in l), None), 5,
                            what="access log line")
        assert f'key="/live/{key}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"' in key_line, key_line
        assert e2.get(f"/live/{key}/index.m3u8?_HLS_msn=x1").status == 400
        assert e2.get(f"/live/{key}/index.m3u8?_HLS_msn=1&_HLS_msn=2").status == 400
        assert e2.get(f"/live/{key}/index.m3u8?_HLS_skip=NO").status == 400
        assert e2.get(f"/live/{key}/../../etc/passwd").status in (400, 404)
        # Age grows while an object sits in the cache.
        seg = parse_playlist(e2.get(f"/live/{key}/index.m3u8").text)["segments"][0]["uri"]
        first = e2.get(f"/live/{key}/{seg}")
        time.sleep(2.2)
        again = e2.get(f"/live/{key}/{seg}")
        assert again.headers["X-Cache"] == "HIT" and again.body == first.body
        assert int(again.headers["Age"]) >= int(first.headers["Age"]) + 2, (first.headers["Age"], again.headers["Age"])
        assert again.headers["Cache-Control"] == "max-age=86400"
        # Unknown stream: 404 from both origins, cached briefly (no Cache-Control from the origin).
        assert e2.get("/live/nosuch/index.m3u8").status == 404
        r = e2.get("/live/nosuch/index.m3u8")
        assert r.status == 404 and r.headers["X-Cache"] == "HIT" and "Age" in r.headers
    finally:
        pub.kill()
        pub.wait()


def test_coalescing_200_llhls_viewers(vid_factory, edge_factory):
    a = vid_factory(access_log=True)
    b = vid_factory(access_log=True)
    e1 = edge_factory([a, b], name="edge1", workers=2)
    # The stream on the origin the hash picks, so each miss is one origin request (a
    # stream on the other origin costs one more, a 404, per miss: test_play_through_edges).
    key = key_on(e1, b, "crowd")
    pub = publish(b.rtmp_url(key), seconds=45)
    try:
        edge_playlist(e1, key, segments=2)
        skip_lines = len(e1.access_log())
        n, seconds = 200, 20
        stats, got = run_viewers(e1.http_port, key, n, seconds)
    finally:
        pub.kill()
        pub.wait()
    assert not stats["errors"], stats["errors"][:5]
    assert len(got) >= seconds * 4, "viewers follow the live edge (5 parts/s)"

    origin = origin_lines(b, e1) + origin_lines(a, e1)
    mine = [o for o in origin if f"/live/{key}/" in o[0] and "init0.mp4" not in o[0]]
    per_uri = collections.Counter(u for u, _, _ in mine)
    plain = per_uri.pop(f"/live/{key}/index.m3u8", 0)
    # At most one origin request per part and per blocking playlist version; the plain
    # playlist is fetched once per TD/2 at most while viewers start (constant: 3).
    dups = {u: c for u, c in per_uri.items() if c > 1}
    assert not dups, {u: [(st, n) for uu, st, n in mine if uu == u] for u in dups}
    assert plain <= 3 + 2 * 3, plain  # edge_playlist polling before the viewers + start
    edge_lines = e1.access_log()[skip_lines:]
    status = collections.Counter(re.search(r"cache=(\S+)", l).group(1) for l in edge_lines)
    edge_bytes = sum(int(l.split('"')[2].split()[1]) for l in edge_lines)
    origin_bytes = sum(o[2] for o in mine)
    lags = sorted(t - min(ts) for ts in got.values() for t in ts)
    q = lambda f: lags[min(len(lags) - 1, int(len(lags) * f))]
    hit = status["HIT"] / max(1, sum(status.values()))
    print(f"\ncoalescing: {n} LL-HLS viewers x {seconds}s on one edge: client requests {stats['requests']}, "
          f"origin requests {len(mine)} ({len(per_uri)} distinct parts/playlist versions + {plain} plain playlist), "
          f"cache {dict(status)}, hit ratio {hit:.4f}, bytes edge->viewers {edge_bytes} vs origin->edge {origin_bytes} "
          f"({edge_bytes / max(1, origin_bytes):.0f}x), follower lag behind the first viewer p50 {q(.5) * 1000:.0f} ms "
          f"p90 {q(.9) * 1000:.0f} ms max {lags[-1] * 1000:.0f} ms (nginx cache-lock waiters poll every 500 ms)")
    assert hit > 0.98
    assert lags[-1] < 1.5, "a waiter gets the object at most ~500 ms after the first (lock polling)"


def test_failover_when_an_origin_dies(topology):
    a, b, e1, e2 = topology
    on_a = key_on(e1, a, "live-a")     # lives on A (its hashed origin)
    on_b = key_on(e1, a, "live-b")     # lives on B, edge 1 asks A first
    pub_a = publish(a.rtmp_url(on_a), seconds=40)
    pub_b = publish(b.rtmp_url(on_b), seconds=40)
    pub_a2 = None
    try:
        edge_playlist(e1, on_a)
        edge_playlist(e1, on_b)
        edge_playlist(e2, on_b)
        # Viewers of the stream on A watch it through the edge before A dies.
        assert ffmpeg_play(e1.url(f"/live/{on_a}/index.m3u8"), seconds=2).returncode == 0
        # Playback of the stream on B through both edges continues across A's death.
        players = [subprocess.Popen([DEBIAN_FFMPEG, "-v", "error", "-i", e.url(f"/live/{on_b}/index.m3u8"),
                                     "-t", "8", "-f", "null", "-"], stderr=subprocess.PIPE, text=True)
                   for e in (e1, e2)]
        time.sleep(3)
        kill_origin(a)
        pub_a.wait(10)
        for p in players:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0 and err.strip() == "", err
        # New requests for the stream on B still work (A refused: B answers).
        r = e1.get(f"/live/{on_b}/index.m3u8")
        assert r.status == 200 and not parse_playlist(r.text).get("endlist")
        # With A marked down, B's 404 stays a 404 (nginx alone would say 502 "no live
        # upstreams" and the edge would serve a stale playlist of the dead stream).
        for i in range(4):
            assert e1.get(f"/live/unknown{i}/index.m3u8").status == 404
        for e in (e1, e2):
            wait_for(lambda: e.get(f"/live/{on_a}/index.m3u8").status == 404, 3 * TD + 2, what="dead stream 404")
        # The stream that was on A is republished to B and plays through the edges.
        pub_a2 = publish(b.rtmp_url(on_a), seconds=30)
        edge_playlist(e1, on_a, segments=3, timeout=30)
        for e in (e1, e2):
            play = ffmpeg_play(e.url(f"/live/{on_a}/index.m3u8"), seconds=3)
            assert play.returncode == 0 and play.stderr.strip() == "", play.stderr
        # A refused connections: B answered every request for streams it has.
        dead = [l for l in e1.fetch_log() + e2.fetch_log() if f"/live/{on_b}/" in l and '" 502 ' in l]
        assert not dead, dead[:3]
    finally:
        for p in (pub_a, pub_b, pub_a2):
            if p:
                p.kill()
                p.wait()


def test_held_request_timeout_is_passed_through(topology):
    """A blocking request the origin holds until its limit (3 TD) and then answers 503 is
    not retried on the other origin (whose 404 would replace it) and does not mark the
    origin down for its other streams."""
    a, b, e1, _ = topology
    stalled_a = key_on(e1, a, "stall-a")   # on A, its hashed origin
    stalled_b = key_on(e1, a, "stall-b")   # on B, after A's 404
    fine = key_on(e1, a, "fine")           # on A, keeps going
    pubs = {stalled_a: publish(a.rtmp_url(stalled_a), seconds=40), stalled_b: publish(b.rtmp_url(stalled_b), seconds=40),
            fine: publish(a.rtmp_url(fine), seconds=40)}
    try:
        for k in pubs:
            edge_playlist(e1, k)
        for i, (k, origin) in enumerate(((stalled_a, a), (stalled_b, b))):
            pubs[k].send_signal(signal.SIGSTOP)
            time.sleep(1)
            msn, part = HINT.search(origin.get(f"/live/{k}/index.m3u8").text).groups()
            t0 = time.monotonic()
            r = e1.get(f"/live/{k}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}", timeout=20)
            held = time.monotonic() - t0
            assert r.status == 503 and 3 * TD - 0.5 < held < 3 * TD + 2, (k, r.status, held)
            # The stream on A is still served, and A is still asked first.
            r = e1.get(f"/live/{fine}/index.m3u8?_HLS_msn={i}")
            assert r.status == 200 and r.headers["X-Cache"] == "MISS"
            # The fetch hop logs when its request ends, which may be just after the edge answered.
            line = wait_for(lambda: next((l for l in reversed(e1.fetch_log())
                                          if f"/live/{fine}/index.m3u8?_HLS_msn={i} " in l), None),
                            5, what="fetch log line")
            assert f"upstream=127.0.0.1:{a.http_port} " in line, line
        stalled_fetch = wait_for(lambda: next((l for l in reversed(e1.fetch_log())
                                               if f"/live/{stalled_b}/index.m3u8?_HLS_msn" in l), None),
                                 5, what="fetch log line")
        assert "ustatus=404, 503" in stalled_fetch, stalled_fetch
    finally:
        for p in pubs.values():
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()


def test_republished_stream_gets_new_media_urls(vid_factory, edge_factory):
    o = vid_factory(access_log=True, window=3)
    e = edge_factory([o], name="edge1")
    first = publish(o.rtmp_url("again"), seconds=4, size="640x360")
    pl = edge_playlist(e, "again", segments=2)
    seg0 = pl["segments"][0]["uri"]
    cached = e.get(f"/live/again/{seg0}")
    assert cached.status == 200
    first.wait(30)
    # Retention over: the stream is forgotten (404), then published again, other content.
    wait_for(lambda: o.get("/live/again/index.m3u8").status == 404, 30, what="stream forgotten")
    second = publish(o.rtmp_url("again"), seconds=12, size="320x240")
    try:
        # The new session's media has names the old one never used; the edge serves the
        # new bytes for them and still the old (identical) bytes for the old names.
        new = edge_playlist(e, "again", segments=2)
        old_names = {s["uri"] for s in pl["segments"]} | {s.get("map") for s in pl["segments"] if s.get("map")}
        new_names = {s["uri"] for s in new["segments"]} | {s.get("map") for s in new["segments"] if s.get("map")}
        assert not old_names & new_names, (old_names, new_names)
        seg = new["segments"][0]["uri"]
        assert e.get(f"/live/again/{seg}").body == o.get(f"/live/again/{seg}").body
        assert o.get(f"/live/again/{seg0}").status == 404
    finally:
        second.kill()
        second.wait()


def test_edge_reload_during_playback(vid_factory, edge_factory):
    a = vid_factory(access_log=True)
    b = vid_factory(access_log=True)
    e1 = edge_factory([a, b], name="edge1", workers=2)
    key = "reload"
    pub = publish(b.rtmp_url(key), seconds=40)
    try:
        edge_playlist(e1, key)
        player = subprocess.Popen([DEBIAN_FFMPEG, "-v", "error", "-i", e1.url(f"/live/{key}/index.m3u8"),
                                   "-t", "10", "-f", "null", "-"], stderr=subprocess.PIPE, text=True)
        result = {}
        viewers = threading.Thread(target=lambda: result.update(zip(("stats", "got"), run_viewers(e1.http_port, key, 20, 9))))
        viewers.start()
        for _ in range(2):
            time.sleep(2.5)
            old = set(e1.worker_pids())
            e1.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: set(e1.worker_pids()) and not set(e1.worker_pids()) & old, 10, what="new edge workers")
        viewers.join(60)
        _, err = player.communicate(timeout=60)
        assert player.returncode == 0 and err.strip() == "", err
        stats = result["stats"]
        assert not stats["errors"], stats["errors"][:5]
        assert len(result["got"]) >= 30
        print(f"\nreload: 20 LL-HLS viewers + ffmpeg across 2 edge reloads: {stats['requests']} requests, "
              f"0 errors, {stats['retries']} idempotent retries on connections closed by old workers")
        wait_for(lambda: len(e1.all_worker_pids()) == 2, 20, what="old workers to exit")
    finally:
        pub.kill()
        pub.wait()
