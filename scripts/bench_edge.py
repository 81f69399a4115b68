#!/usr/bin/env python3
"""The stock edge (nginx-conf/edge.conf, nginx's cache lock) against the vid edge
(nginx-conf/edge-vid.conf, `hls_live_edge`), in the same run, on loopback:

  origins A (2 workers) and B; two stock edges and two vid edges (2 workers each), all
  in front of [A, B]; one stream on A (TD 2 s, parts 200 ms);
  VIEWERS LL-HLS clients over the two stock edges and as many over the two vid edges,
  plus one client reading origin A directly. Each client behaves as hls.js in
  low-latency mode: keep-alive, a blocking playlist reload for the next part and a
  parallel GET of the preload-hinted part.

Prints, per edge kind:
  - the delay each viewer sees against the direct client, for the blocking playlist and
    the part (the time its response completed minus the direct client's), p50/p90/p99,
    for the first viewer of each object on an edge and for the others;
  - origin requests per part and per blocking playlist, per edge; errors;
  - failover: origin A killed, the stream republished on B; time from the republish and
    from B listing its first part to the first new part at clients of each edge kind.

  - with --hlsjs SECONDS: hls.js (the player page in headless Chromium, tests/tools/play.js)
    playing the stream directly from the origin, through a stock edge and through a vid
    edge, one after the other: the camera-to-screen (wall clock, from PROGRAM-DATE-TIME)
    latency it reports, median and p90.

    python3 scripts/bench_edge.py [--viewers 150] [--seconds 30] [--hlsjs 30]
"""

import argparse
import asyncio
import collections
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Vid, http, publish, wait_for  # noqa: E402
from test_cdn import HINT, Conn, kill_origin  # noqa: E402
from test_edge import Edge  # noqa: E402

TD = 2  # the shipped default (hls_live_segment 2s), parts 200 ms
PART_URI = re.compile(r'#EXT-X-PART:[^\n]*URI="(\d+)\.(\d+)\.m4s"')


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- viewers (one process per edge) -------------------------------------------------------

async def viewer(port, key, until, rec, stats):
    pl, pt = Conn(port, stats), Conn(port, stats)
    base = f"/live/{key}/"
    while time.monotonic() < until:
        try:
            status, _, body = await pl.get(base + "index.m3u8")
            m = HINT.search(body.decode()) if status == 200 else None
            if not m:
                stats["errors"].append(f"playlist {status}")
                await asyncio.sleep(0.2)
                continue
            while m and time.monotonic() < until:
                msn, part = m.groups()

                async def timed(conn, path, kind):
                    s, _, b = await conn.get(path)
                    rec.append((kind, int(msn), int(part), time.monotonic(), s))
                    return s, b

                (s1, b1), (s2, _) = await asyncio.gather(
                    timed(pl, f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}", "playlist"),
                    timed(pt, f"{base}{msn}.{part}.m4s", "part"))
                if s1 != 200 or s2 != 200:
                    stats["errors"].append(f"{msn}.{part}: playlist {s1}, part {s2}")
                    break
                m = HINT.search(b1.decode())
        except Exception as e:  # counted, then the viewer starts over
            stats["errors"].append(repr(e))
            pl.close()
            pt.close()
            await asyncio.sleep(0.2)
    pl.close()
    pt.close()


def viewers_proc(port, key, n, start_at, seconds, q):
    stats = {"requests": 0, "bytes": 0, "retries": 0, "errors": []}
    rec = []

    async def main():
        await asyncio.sleep(max(0, start_at - time.monotonic()))
        until = start_at + seconds
        await asyncio.gather(*(viewer(port, key, until, rec, stats) for _ in range(n)))

    asyncio.run(main())
    q.put((port, rec, stats))


def pct(xs, f):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * f))] if xs else float("nan")


def fmt(xs):
    return (f"p50 {pct(xs, .5) * 1000:6.1f}  p90 {pct(xs, .9) * 1000:6.1f}  p99 {pct(xs, .99) * 1000:6.1f} ms"
            f"  (n={len(xs)})")


# --- topology -------------------------------------------------------------------------------

def first_origin(edge, origins, key):
    """The origin the edges' consistent hash tries first for KEY."""
    http(edge.url(f"/live/{key}/init0.mp4"))
    p = edge.prefix / "logs" / "edge.fetch.log"

    def line():
        return next((l for l in reversed(p.read_text().splitlines()) if f"/live/{key}/init0.mp4" in l), None) \
            if p.exists() else None

    port = re.search(r"upstream=127\.0\.0\.1:(\d+)", wait_for(line, 5, what="fetch log")).group(1)
    return next(o for o in origins if str(o.http_port) == port)


def key_on(edge, origins, origin, prefix):
    for i in range(200):
        if first_origin(edge, origins, f"{prefix}{i}") is origin:
            return f"{prefix}{i}"
    raise SystemExit("no key hashes to that origin")


def origin_counts(vid, edge_name, key):
    """Origin requests from EDGE_NAME for KEY's parts and blocking playlists."""
    parts, pls = collections.Counter(), collections.Counter()
    for l in vid.access_log():
        m = re.match(r'\S+ "([^"]+)" (\d+) (\d+) \S+ edge=(\S+)', l)
        if not m or m.group(4) != edge_name or f"/live/{key}/" not in m.group(1):
            continue
        u = m.group(1)
        if re.search(r"/\d+\.\d+\.m4s$", u):
            parts[u] += 1
        elif "_HLS_msn=" in u:
            pls[u] += 1
    return parts, pls


def obj_of(uri, key):
    """("part"|"playlist", msn, part) of a request URI of the LL-HLS viewers, else None."""
    m = re.fullmatch(rf"/live/{key}/(\d+)\.(\d+)\.m4s", uri)
    if m:
        return ("part", int(m.group(1)), int(m.group(2)))
    m = re.fullmatch(rf"/live/{key}/index\.m3u8\?_HLS_msn=(\d+)&_HLS_part=(\d+)", uri)
    if m:
        return ("playlist", int(m.group(1)), int(m.group(2)))
    return None


def wait_live(url_get, key):
    def ready():
        r = url_get(f"/live/{key}/index.m3u8")
        return r.status == 200 and HINT.search(r.text) and len(re.findall(r"#EXTINF", r.text)) >= 2

    wait_for(ready, 30, step=0.2, what=f"{key} live")


# --- failover -------------------------------------------------------------------------------

async def failover_client(port, key, old_max, t_start, out, stop):
    c = Conn(port, {"requests": 0, "bytes": 0, "retries": 0, "errors": []})
    while not stop.is_set():
        try:
            s, _, b = await c.get(f"/live/{key}/index.m3u8")
            if s == 200:
                new = [(int(m), int(p)) for m, p in PART_URI.findall(b.decode()) if int(m) > old_max]
                if new:
                    m, p = new[0]
                    s2, _, _ = await c.get(f"/live/{key}/{m}.{p}.m4s")
                    if s2 == 200:
                        out.append(time.monotonic())
                        return
        except Exception:
            c.close()
        await asyncio.sleep(0.05)


def failover(a, b, stock, vid, key):
    pub = publish(a.rtmp_url(key), seconds=60)
    wait_live(a.get, key)
    for e in stock + vid:
        wait_live(e.get, key)
    old_max = max(int(m) for m, _ in PART_URI.findall(a.get(f"/live/{key}/index.m3u8").text))
    kill_origin(a)
    pub.kill()
    pub.wait()
    time.sleep(1.0)
    res = {"stock": [], "vid": []}
    listed = []

    async def main():
        stop = asyncio.Event()
        t0 = time.monotonic()
        tasks = [asyncio.create_task(failover_client(e.http_port, key, old_max, t0, res[kind], stop))
                 for kind, es in (("stock", stock), ("vid", vid)) for e in es for _ in range(5)]

        async def watch_origin():
            c = Conn(b.http_port, {"requests": 0, "bytes": 0, "retries": 0, "errors": []})
            while True:
                try:
                    s, _, body = await c.get(f"/live/{key}/index.m3u8")
                    if s == 200 and PART_URI.search(body.decode()):
                        listed.append(time.monotonic())
                        return
                except Exception:
                    c.close()
                await asyncio.sleep(0.01)

        w = asyncio.create_task(watch_origin())
        await asyncio.wait_for(asyncio.gather(*tasks, w), 30)
        stop.set()
        return t0

    pub2 = publish(b.rtmp_url(key), seconds=40)
    try:
        t0 = asyncio.run(main())
    finally:
        pub2.kill()
        pub2.wait()
    return t0, listed[0], res


# --- hls.js -------------------------------------------------------------------------------

def hlsjs(page_origin, playlist, seconds):
    """hls.js on the player page (served by PAGE_ORIGIN) playing PLAYLIST: (median, p90)
    of its wall-clock latency samples in seconds, and its stall count."""
    import json
    import statistics
    import urllib.parse

    node, npm = shutil.which("node"), shutil.which("npm")
    browser = ROOT / "tests" / "browser"
    if not (browser / "node_modules" / "playwright-core").exists():
        subprocess.run([npm, "ci", "--prefix", str(browser), "--no-audit", "--no-fund", "--loglevel=error"],
                       check=True, timeout=300)
    url = page_origin.url("/?src=" + urllib.parse.quote(playlist, safe=""))
    out = subprocess.run([node, str(ROOT / "tests" / "tools" / "play.js"), "--url", url, "--seconds", str(seconds),
                          "--startup-timeout", "60", "--chromium", shutil.which("chromium") or "/usr/bin/chromium"],
                         capture_output=True, text=True, timeout=seconds + 180)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        return None, None, f"no report: {out.stderr[-300:]}"
    st = json.loads(lines[-1]).get("stats") or {}
    wall = sorted(x["wall"] for x in st.get("latency", []) if x.get("wall") is not None)
    if not wall:
        return None, None, "no samples"
    return statistics.median(wall), wall[int(len(wall) * .9)], st.get("stalls")


# --- main -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", type=int, default=150, help="per edge kind, over its 2 edges")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--hlsjs", type=int, default=0, metavar="SECONDS",
                    help="also play with hls.js direct / stock edge / vid edge for SECONDS each")
    args = ap.parse_args()
    made = []
    try:
        a = Vid(workers=2, access_log=True, segment=f"{TD}s", window=6).start()
        made.append(a)
        b = Vid(workers=1, access_log=True, segment=f"{TD}s", window=6).start()
        made.append(b)
        stock = [Edge([a, b], name=f"stock{i}", workers=2, conf="edge.conf", td=TD).start() for i in (1, 2)]
        vid = [Edge([a, b], name=f"vid{i}", workers=2, conf="edge-vid.conf", td=TD).start() for i in (1, 2)]
        made += stock + vid
        key = key_on(stock[0], [a, b], a, "bench")
        log(f"stream {key} on origin A; {args.viewers} viewers per edge kind for {args.seconds:.0f} s")
        pub = publish(a.rtmp_url(key), seconds=args.seconds + 40)
        try:
            wait_live(a.get, key)
            for e in stock + vid:
                wait_live(e.get, key)
            skip = {o.prefix: len(o.access_log()) for o in (a, b)}
            q = mp.Queue()
            start_at = time.monotonic() + 2.0
            per_edge = args.viewers // 2
            # Python clients: a process per ~25 viewers, so that a burst of answers is
            # not queued behind one busy client process for long.
            chunks = max(1, -(-per_edge // 25))
            jobs = [(a.http_port, 1)] + [(e.http_port, per_edge // chunks + (i < per_edge % chunks))
                                         for e in stock + vid for i in range(chunks)]
            procs = [mp.Process(target=viewers_proc, args=(port, key, n, start_at, args.seconds, q))
                     for port, n in jobs]
            for p in procs:
                p.start()
            results = collections.defaultdict(lambda: ([], {"requests": 0, "errors": []}))
            for _ in procs:
                port, rec, stats = q.get()
                results[port][0].extend(rec)
                results[port][1]["requests"] += stats["requests"]
                results[port][1]["errors"].extend(stats["errors"])
            for p in procs:
                p.join()
            load = os.getloadavg()
        finally:
            pub.kill()
            pub.wait()

        direct = {}
        for kind, m, p, t, s in results[a.http_port][0]:
            if s == 200:
                direct[(kind, m, p)] = t
        print(f"\n{args.viewers} LL-HLS viewers per edge kind over 2 edges each (2 workers), "
              f"{args.seconds:.0f} s, origin TD {TD} s / parts 200 ms; load average {load[0]:.2f} {load[1]:.2f}")
        print("delay against a client reading the origin directly:")
        for kind, es in (("stock edge", stock), ("vid edge  ", vid)):
            first = collections.defaultdict(list)
            other = collections.defaultdict(list)
            errors, requests = 0, 0
            for e in es:
                rec, stats = results[e.http_port]
                errors += len(stats["errors"])
                requests += stats["requests"]
                by_obj = collections.defaultdict(list)
                for k, m, p, t, s in rec:
                    if s == 200 and (k, m, p) in direct:
                        by_obj[(k, m, p)].append(t - direct[(k, m, p)])
                for (k, _, _), ds in by_obj.items():
                    ds.sort()
                    first[k].append(ds[0])
                    other[k].extend(ds[1:])
            for k in ("playlist", "part"):
                print(f"  {kind} {k:8s} first viewer: {fmt(first[k])}")
                print(f"  {kind} {k:8s} the others:   {fmt(other[k])}")
            ratios = []
            for e in es:
                parts, pls = origin_counts(a, e.name, key)
                ratios.append(f"{e.name}: {sum(parts.values()) / max(1, len(parts)):.3f} per part ({len(parts)} parts), "
                              f"{sum(pls.values()) / max(1, len(pls)):.3f} per blocking playlist ({len(pls)})")
            print(f"  {kind} origin requests: " + "; ".join(ratios))
            print(f"  {kind} client requests {requests}, errors {errors}"
                  + (f" (e.g. {results[es[0].http_port][1]['errors'][:3]})" if errors else ""))

        # The same, measured by the servers (nginx's $msec when the response was sent:
        # the edges' access logs against origin A's line for the direct client), free of
        # the Python clients' own queueing.
        direct_srv = {}
        for l in a.access_log():
            m = re.match(r'(\S+) "([^"]+)" 200 \S+ \S+ edge=-$', l)
            o = m and obj_of(m.group(2), key)
            if o:
                direct_srv.setdefault(o, float(m.group(1)))
        print("the same, measured by nginx (response sent at the edge vs at the origin for the direct client):")
        for kind, es in (("stock edge", stock), ("vid edge  ", vid)):
            first = collections.defaultdict(list)
            other = collections.defaultdict(list)
            for e in es:
                by_obj = collections.defaultdict(list)
                for l in e.access_log():
                    m = re.search(r'"GET (\S+) HTTP/[^"]+" 200 .* end=(\S+)$', l)
                    o = m and obj_of(m.group(1), key)
                    if o and o in direct_srv:
                        by_obj[o].append(float(m.group(2)) - direct_srv[o])
                for (k, _, _), ds in by_obj.items():
                    ds.sort()
                    first[k].append(ds[0])
                    other[k].extend(ds[1:])
            for k in ("playlist", "part"):
                print(f"  {kind} {k:8s} first viewer: {fmt(first[k])}")
                print(f"  {kind} {k:8s} the others:   {fmt(other[k])}")

        if args.hlsjs:
            pub = publish(a.rtmp_url(key), seconds=3 * (args.hlsjs + 60))
            try:
                wait_live(a.get, key)
                print(f"hls.js camera-to-screen latency (wall clock), {args.hlsjs} s each:")
                for label, base in (("direct", a.url("")), ("stock edge", stock[0].url("")),
                                    ("vid edge", vid[0].url(""))):
                    med, p90, stalls = hlsjs(a, f"{base}/live/{key}/index.m3u8", args.hlsjs)
                    if med is None:
                        print(f"  {label:10s}: {stalls}")
                    else:
                        print(f"  {label:10s}: median {med * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, stalls {stalls}")
            finally:
                pub.kill()
                pub.wait()

        fkey = key_on(stock[0], [a, b], a, "failover")
        t0, listed, res = failover(a, b, stock, vid, fkey)
        print(f"failover (origin A killed, {fkey} republished on B; B lists its first part "
              f"{(listed - t0) * 1000:.0f} ms after the republish):")
        for kind in ("stock", "vid"):
            ts = [t - listed for t in res[kind]]
            print(f"  {kind:5s} edges: first new part at clients after B lists it: {fmt(ts)}; "
                  f"after the republish p50 {pct([t - t0 for t in res[kind]], .5) * 1000:.0f} ms")
    finally:
        for x in made:
            try:
                x.stop()
            except Exception:
                pass
        for x in made:
            if isinstance(x, Vid):
                x.cleanup()
            else:
                shutil.rmtree(x.prefix, ignore_errors=True)


if __name__ == "__main__":
    main()
