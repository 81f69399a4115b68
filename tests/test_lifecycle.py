"""The life of a stream against a real nginx: encoder reconnects (grace period, takeover,
a half-open old connection) watched by hls.js in Chromium, unauthenticated sockets, a
reload that resizes the zone, shutdown. Clock steps, a killed publishing worker and
socket floods are in tests/test_chaos.py.
"""

import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import NGINX, Vid, parse_playlist, publish, wait_for
from test_player import STARTUP_TIMEOUT, browser, excused_stalls, run_play  # noqa: F401 (browser: a fixture)

# libfaketime (Debian `faketime`), for tests/test_chaos.py.
FAKETIME_LIB = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
                    Path("/usr/lib/faketime/libfaketime.so.1"))


class LifeVid(Vid):
    """A Vid started with an environment and config edits of its own, managed by the test
    (some tests kill a worker on purpose, which the shared fixture reports as a crash)."""

    def __init__(self, env=None, main_extra="", events_extra="", stream_main_extra="", replace=(), **kw):
        super().__init__(**kw)
        self.env = env
        conf = self.prefix / "conf" / "nginx.conf"
        text = conf.read_text()
        if main_extra:
            text = main_extra + "\n" + text
        for old, new in replace:
            assert old in text, old
            text = text.replace(old, new)
        if stream_main_extra:
            text = text.replace("stream {\n", "stream {\n    " + stream_main_extra + "\n", 1)
        if events_extra:
            assert "worker_connections 4096;" in text
            text = text.replace("worker_connections 4096;", events_extra, 1)
        conf.write_text(text)

    def start(self):
        self.proc = subprocess.Popen(
            [str(NGINX), "-p", str(self.prefix), "-c", "conf/nginx.conf", "-e", "logs/error.log", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env,
        )
        wait_for(self._listening, 10, what="nginx to listen")
        wait_for(lambda: len(self.worker_pids()) >= self.workers, 10, what="workers")
        return self


@pytest.fixture
def life_factory():
    made = []

    def make(allow_killed=(), allow_alerts=(), **kw):
        v = LifeVid(**kw).start()
        v.allow_killed = allow_killed
        v.allow_alerts = allow_alerts
        made.append(v)
        return v

    yield make
    for v in made:
        v.stop()
        allowed = list(v.allow_alerts) + [f"worker process {pid} exited on signal 9" for pid in v.allow_killed]
        log = "\n".join(l for l in v.log().splitlines() if not any(a in l for a in allowed))
        crashes = [c for c in v.crashes() if not any(a in c for a in allowed)]
        v.cleanup()
        assert not crashes, f"worker crashed: {crashes}"
        assert "[alert]" not in log and "[emerg]" not in log, log[-4000:]


def playlist(vid, key):
    r = vid.get(f"/live/{key}/index.m3u8")
    return parse_playlist(r.text) if r.status == 200 else None


def last_msn(pl):
    return int(pl["segments"][-1]["uri"].split(".")[0])


def wait_segments(vid, key, n=2, timeout=30):
    return wait_for(lambda: (lambda p: p if p and len(p["segments"]) >= n else None)(playlist(vid, key)),
                    timeout, step=0.2, what=f"{n} segments of {key}")


def wait_advance(vid, key, timeout=8):
    """The playlist gains a segment (and has no ENDLIST) within `timeout`."""
    start = last_msn(playlist(vid, key))
    pl = wait_for(lambda: (lambda p: p if p and last_msn(p) > start else None)(playlist(vid, key)),
                  timeout, step=0.2, what=f"{key} to advance past {start}")
    assert not pl.get("endlist"), pl
    return pl


class Watch:
    """Polls a playlist in the background; remembers whether ENDLIST was ever served."""

    def __init__(self, vid, key):
        self.vid, self.key = vid, key
        self.endlist_at = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                p = playlist(self.vid, self.key)
                if p and p.get("endlist") and self.endlist_at is None:
                    self.endlist_at = time.monotonic()
            except OSError:
                pass
            time.sleep(0.1)

    def close(self):
        self.stop.set()
        self.thread.join(5)


def kill(p):
    if p.poll() is None:
        p.kill()
    p.wait()


# ------------------------------------------------------------------ reconnects

def test_reconnect_within_grace_continues_then_grace_ends(life_factory):
    # 1 s segments: the grace period defaults to 3 s.
    vid = life_factory(segment="1s", part="200ms", window=6)
    a = publish(vid.rtmp_url("recon"), seconds=60)
    watch = Watch(vid, "recon")
    b = None
    try:
        wait_segments(vid, "recon", 3)
        before = last_msn(playlist(vid, "recon"))
        a.send_signal(signal.SIGKILL)  # the encoder dies: no unpublish, the socket closes
        a.wait()
        time.sleep(1.0)
        b = publish(vid.rtmp_url("recon"), seconds=60)
        pl = wait_for(lambda: (lambda p: p if p and any(s.get("disc") for s in p["segments"])
                               and last_msn(p) > before + 2 else None)(playlist(vid, "recon")),
                      20, what="the republished stream")
        msns = [int(s["uri"].split(".")[0]) for s in pl["segments"]]
        assert msns == list(range(msns[0], msns[0] + len(msns))), ("MEDIA-SEQUENCE continues", msns)
        assert watch.endlist_at is None, "ENDLIST served during the reconnect"
        assert "ended (connection lost)" in vid.log()

        # Now the encoder goes for good: ENDLIST only once the grace period is over.
        b.send_signal(signal.SIGKILL)
        b.wait()
        gone = time.monotonic()
        wait_for(lambda: watch.endlist_at, 15, what="ENDLIST after the grace period")
        waited = watch.endlist_at - gone
        assert waited >= 2.5, f"ENDLIST {waited:.1f} s after the disconnect, before the 3 s grace period ended"
    finally:
        watch.close()
        kill(a)
        if b:
            kill(b)


class FreezableRelay:
    """TCP relay to the origin's RTMP port that can stop forwarding without closing:
    the origin's side of the connection stays open and silent (half-open)."""

    def __init__(self, target_port):
        self.target = target_port
        self.frozen = threading.Event()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.kept = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        try:
            client, _ = self.srv.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        self.kept += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self.pipe, args=(src, dst), daemon=True).start()

    def pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data or self.frozen.is_set():
                    break  # frozen: stop forwarding, close nothing
                dst.sendall(data)
        except OSError:
            pass
        while not self.frozen.is_set():  # the publisher went away before the freeze
            time.sleep(0.1)

    def close(self):
        for s in self.kept + [self.srv]:
            s.close()


@pytest.mark.parametrize("old_connection", ["closed", "half-open"])
def test_reconnect_keeps_hlsjs_playing(life_factory, browser, old_connection):
    """The encoder is killed and restarts within 2 s while hls.js in Chromium plays: its
    old TCP connection either closes, or stays open with no FIN (a relay that stops
    forwarding: a network change). hls.js keeps playing: no ENDLIST, no `ended`, at most one
    stall, playback goes on with new media."""
    vid = life_factory(segment="1s", part="200ms", window=6)
    relay = FreezableRelay(vid.rtmp_port)
    via = f"rtmp://127.0.0.1:{relay.port}/live/halfopen" if old_connection == "half-open" else vid.rtmp_url("halfopen")
    a = publish(via, seconds=90)
    b = None
    watch = None
    reconnected = threading.Event()

    def reconnect():
        nonlocal b
        time.sleep(5)  # steady playback first
        if old_connection == "half-open":
            relay.frozen.set()  # the old connection now hangs, open and silent
        a.send_signal(signal.SIGKILL)
        time.sleep(1.5)
        b = publish(vid.rtmp_url("halfopen"), seconds=90)
        reconnected.set()

    try:
        wait_segments(vid, "halfopen", 2)
        watch = Watch(vid, "halfopen")
        out, _ = run_play(browser, vid.url("/?key=halfopen"), "--seconds", "22",
                                      timeout=STARTUP_TIMEOUT + 22 + 90, on_playing=reconnect)
        log = vid.log()
    finally:
        if watch:
            watch.close()
        relay.close()
        kill(a)
        if b:
            kill(b)
    stats = out.get("stats") or {}
    assert not out.get("error"), out.get("error")
    assert reconnected.is_set(), "the reconnect did not happen while the page played"
    assert watch.endlist_at is None, "ENDLIST served during the reconnect"
    assert not stats["ended"], "the player saw the stream end"
    assert stats["fatalErrors"] == 0, stats["errors"]
    # hls.js's own start-up hiccup (see test_player.START_GRACE_S) is not the reconnect's.
    assert stats["stalls"] - len(excused_stalls(stats)) <= 1, stats["stallEvents"]
    samples = out["samples"]
    assert all(s["playing"] for s in samples[-3:]), samples[-5:]
    # Playing new media: the playhead went on well past the reconnect.
    assert samples[-1]["currentTime"] - samples[-6]["currentTime"] >= 4, samples[-8:]
    if old_connection == "half-open":
        assert "takes the stream over" in log, log[-3000:]
        assert 'closing connection: stream "halfopen" was taken over by another publisher' in log, log[-3000:]
    else:
        assert "ended (connection lost)" in log and "continues the previous stream" in log, log[-3000:]


# ------------------------------------------------------------------ unauthenticated sockets

def test_handshake_deadline_and_trickling_client(life_factory):
    vid = life_factory(stream_extra="rtmp_live_handshake_timeout 2s;")
    s = socket.create_connection(("127.0.0.1", vid.rtmp_port))
    t0 = time.monotonic()
    closed = None
    try:
        # One byte every 0.5 s would keep an idle timer alive forever; the deadline is absolute.
        for _ in range(40):
            try:
                s.send(b"\x03")
                s.settimeout(0.5)
                if s.recv(4096) == b"":
                    closed = time.monotonic() - t0
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = time.monotonic() - t0
                break
    finally:
        s.close()
    assert closed is not None, "a trickling client was never closed"
    # Sent bytes for longer than the deadline; closed by it, not by an error.
    assert 1.8 <= closed < 6, f"closed after {closed:.1f} s, deadline 2 s"


def test_limit_conn_caps_connections_per_address(life_factory):
    """The documented cap on (unauthenticated) connections per address: stream limit_conn."""
    vid = life_factory(stream_main_extra="limit_conn_zone $binary_remote_addr zone=rtmp_addr:1m;",
                       stream_extra="limit_conn rtmp_addr 3;")
    socks = [socket.create_connection(("127.0.0.1", vid.rtmp_port)) for _ in range(3)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", vid.rtmp_port))
        extra.settimeout(3)
        try:
            assert extra.recv(16) == b"", "a 4th connection from one address was served"
        except ConnectionResetError:
            pass
        finally:
            extra.close()
        wait_for(lambda: 'limiting connections by zone "rtmp_addr"' in vid.log(), 5, what="limit_conn log line")
        # The three within the cap are still being served (handshake answered).
        socks[0].sendall(b"\x03" + bytes(1536))
        socks[0].settimeout(3)
        assert socks[0].recv(1)[:1] == b"\x03"
    finally:
        for s in socks:
            s.close()


# ------------------------------------------------------------------ a reload that resizes the zone

def test_reload_resizing_the_zone_carries_streams_over(life_factory):
    """nginx reuses a shared zone only when its size is unchanged. A resize carries every
    stream into the new zone: viewers keep the playlist, the publisher (still on an old
    worker) is disconnected rather than left writing to a zone nobody reads, and its
    reconnect continues the stream. Never two writers for one key."""
    vid = life_factory(workers=2, segment="1s", part="200ms", window=6)
    a = publish(vid.rtmp_url("resize"), seconds=60)
    b = None
    try:
        wait_segments(vid, "resize", 3)
        before = last_msn(playlist(vid, "resize"))
        conf = vid.prefix / "conf" / "nginx.conf"
        text = conf.read_text()
        assert "hls_live_zone live 64m;" in text
        conf.write_text(text.replace("hls_live_zone live 64m;", "hls_live_zone live 32m;"))
        vid.reload()
        wait_for(lambda: "changed size" in vid.log(), 10, what="the carry-over log line")
        log = vid.log()
        assert "1 streams carried over, 0 did not fit" in log, log[-2000:]
        # The old writer is refused and its connection closed.
        wait_for(lambda: 'stream "resize": its zone is gone' in vid.log(), 10, what="the old writer to be closed")
        assert a.wait(20) is not None
        # New workers serve the carried stream: no ENDLIST during the grace period.
        r = vid.get("/live/resize/index.m3u8")
        assert r.status == 200, (r.status, r.text, vid.log()[-3000:])
        pl = parse_playlist(r.text)
        assert not pl.get("endlist") and last_msn(pl) >= before, pl
        assert any(s["key"] == "resize" for s in json.loads(vid.get("/streams.json").text)["streams"])
        # The encoder reconnects: the playlist goes on with a discontinuity.
        b = publish(vid.rtmp_url("resize"), seconds=60)
        pl = wait_for(lambda: (lambda p: p if p and any(s.get("disc") for s in p["segments"])
                               and last_msn(p) > before + 2 else None)(playlist(vid, "resize")),
                      20, what="the republished stream in the new zone")
        msns = [int(s["uri"].split(".")[0]) for s in pl["segments"]]
        assert msns == list(range(msns[0], msns[0] + len(msns))), msns
        assert not pl.get("endlist")
        wait_advance(vid, "resize")
    finally:
        kill(a)
        if b:
            kill(b)


# ------------------------------------------------------------------ configuration and shutdown

def test_nginx_t_names_a_zone_that_is_used_but_not_defined():
    v = Vid()
    try:
        conf = v.prefix / "conf" / "nginx.conf"
        good = conf.read_text()
        anchor = "            hls_live on;                # http://HOST:8080/live/"
        assert anchor in good
        conf.write_text(good.replace(anchor, "            hls_live_zone nosuch;\n" + anchor, 1))
        r = v.nginx("-t", check=False)
        assert r.returncode != 0, r.stderr
        assert '"hls_live_zone" "nosuch" is used' in r.stderr and "stream{} block" in r.stderr, r.stderr
        conf.write_text(good.replace("rtmp_live live;", "rtmp_live other;"))
        r = v.nginx("-t", check=False)
        assert r.returncode != 0 and '"hls_live_zone" "other" is used' in r.stderr, r.stderr
        conf.write_text(good)
        assert v.nginx("-t", check=False).returncode == 0
    finally:
        v.cleanup()


def test_quit_completes_while_a_publisher_is_connected(life_factory):
    assert "worker_shutdown_timeout 30s;" in (Path(__file__).parent.parent / "nginx-conf" / "vid.conf").read_text(), \
        "the shipped config sets worker_shutdown_timeout"
    vid = life_factory(replace=[("worker_shutdown_timeout 30s;", "worker_shutdown_timeout 2s;")])
    pub = publish(vid.rtmp_url("quit"), seconds=60)
    try:
        wait_segments(vid, "quit", 2)
        # A long query (a CDN token or cache-buster) is fine.
        r = vid.get("/live/quit/index.m3u8?token=" + "t" * 6000 + "&cb=1")
        assert r.status == 200 and "#EXTM3U" in r.text, r.status
        t0 = time.monotonic()
        vid.proc.send_signal(signal.SIGQUIT)
        vid.proc.wait(20)
        took = time.monotonic() - t0
        print(f"\nquit with a publisher connected: nginx exited after {took:.1f} s (worker_shutdown_timeout 2s)")
        assert took < 10
        assert "rtmp: closing connection: worker is exiting" in vid.log()
    finally:
        kill(pub)
