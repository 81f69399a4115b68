"""Geography: time-to-first-frame and live latency through a nearby edge vs straight
from a far origin. Run by scripts/cdn_geo.sh (see there for the set-up).

Delays are one-way, each direction: viewer<->edge VIEWER_EDGE_MS (5), edge<->origin
EDGE_ORIGIN_MS (80); the direct viewer is VIEWER_EDGE_MS + EDGE_ORIGIN_MS from the
origin. With tc netem available they would be set on veth pairs between namespaces;
this kernel build has no sch_netem, so a user-space relay adds them per TCP connection:
the first byte waits one round trip (the handshake) and every chunk waits the one-way
delay in its direction. Bandwidth and loss are not modelled.
"""

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import DEBIAN_FFMPEG, Vid, free_port, publish, wait_for  # noqa: E402
from test_cdn import Edge, HINT, Conn  # noqa: E402

VIEWER_EDGE = float(os.environ.get("VIEWER_EDGE_MS", "5")) / 1000
EDGE_ORIGIN = float(os.environ.get("EDGE_ORIGIN_MS", "80")) / 1000
RUNS = int(os.environ.get("GEO_RUNS", "3"))


class Relay:
    """TCP relay on 127.0.0.1 adding a one-way delay in each direction."""

    def __init__(self, target_port, delay):
        self.port, self.target, self.delay = free_port(), target_port, delay
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    async def _start(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _pump(self, reader, writer, first_extra=0.0):
        queue = asyncio.Queue()

        async def send():
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if data is None:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        extra = first_extra
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + self.delay + extra, data or None))
                extra = 0.0
                if not data:
                    break
        except ConnectionError:
            queue.put_nowait((0, None))
        await sender

    async def _client(self, cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            cw.close()
            return
        # The handshake costs one round trip before the first request byte arrives.
        await asyncio.gather(self._pump(cr, uw, first_extra=2 * self.delay), self._pump(ur, cw),
                             return_exceptions=True)


class Far:
    """Something with an http_port, for Edge(origins=...)."""

    def __init__(self, port):
        self.http_port = port


def ttff(url):
    t0 = time.monotonic()
    r = subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", url, "-frames:v", "1", "-f", "null", "-"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return time.monotonic() - t0


def newest_part_end(text):
    """Wall-clock end (epoch s) of the newest listed part, from the PDT of its segment
    (a segment starts at its PDT, or where the previous one ended)."""
    from datetime import datetime

    start, acc, dur, end = None, 0.0, 0.0, None
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            start, acc = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp(), 0.0
        elif line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line.startswith("#EXT-X-PART:") and start is not None:
            acc += float(re.search(r"DURATION=([0-9.]+)", line).group(1))
            end = start + acc
        elif line and not line.startswith("#") and start is not None:
            start, acc = start + dur, 0.0
    return end


async def follow(port, key, seconds, lat):
    stats = {"requests": 0, "bytes": 0, "retries": 0, "errors": []}
    pl, pt = Conn(port, stats), Conn(port, stats)
    status, _, body = await pl.get(f"/live/{key}/index.m3u8")
    m = HINT.search(body.decode())
    end = time.monotonic() + seconds
    while m and time.monotonic() < end:
        msn, part = m.groups()
        (s1, _, b1), (s2, _, _) = await asyncio.gather(
            pl.get(f"/live/{key}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"), pt.get(f"/live/{key}/{msn}.{part}.m4s"))
        if s1 == 200 and s2 == 200:
            lat.append(time.time() - newest_part_end(b1.decode()))
        m = HINT.search(b1.decode())
    pl.close()
    pt.close()


def latency(port, key, viewers=10, seconds=10):
    lat = []

    async def main():
        await asyncio.gather(*(follow(port, key, seconds, lat) for _ in range(viewers)))

    asyncio.run(main())
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.95)]


def main():
    origin = Vid(access_log=True).start()
    edges = []
    pub = publish(origin.rtmp_url("geo"), seconds=120)
    try:
        to_origin = Relay(origin.http_port, EDGE_ORIGIN)             # edge -> origin
        direct = Relay(origin.http_port, VIEWER_EDGE + EDGE_ORIGIN)  # far viewer -> origin
        wait_for(lambda: origin.get("/live/geo/index.m3u8").status == 200, 20, what="stream")
        time.sleep(3)

        def new_edge():
            e = Edge([Far(to_origin.port)], name=f"geo{len(edges)}", workers=1).start()
            edges.append(e)
            return e, Relay(e.http_port, VIEWER_EDGE)

        print(f"one-way delays: viewer-edge {VIEWER_EDGE * 1000:.0f} ms, edge-origin {EDGE_ORIGIN * 1000:.0f} ms, "
              f"viewer-origin direct {(VIEWER_EDGE + EDGE_ORIGIN) * 1000:.0f} ms (user-space relay)")
        d = [ttff(f"http://127.0.0.1:{direct.port}/live/geo/index.m3u8") for _ in range(RUNS)]
        cold, warm = [], []
        for _ in range(RUNS):
            e, near = new_edge()
            cold.append(ttff(f"http://127.0.0.1:{near.port}/live/geo/index.m3u8"))
            warm.append(ttff(f"http://127.0.0.1:{near.port}/live/geo/index.m3u8"))
        med = statistics.median
        print(f"time to first frame (ffmpeg, median of {RUNS}): direct {med(d) * 1000:.0f} ms, "
              f"edge cold cache {med(cold) * 1000:.0f} ms, edge warm cache {med(warm) * 1000:.0f} ms")
        e, near = edges[-1], Relay(edges[-1].http_port, VIEWER_EDGE)
        dl = latency(direct.port, "geo")
        el = latency(near.port, "geo")
        print("live latency (LL-HLS client, 10 viewers x 10 s, newest part end -> playlist received; "
              f"includes the publisher's own delay): direct p50 {dl[0] * 1000:.0f} ms p95 {dl[1] * 1000:.0f} ms, "
              f"edge p50 {el[0] * 1000:.0f} ms p95 {el[1] * 1000:.0f} ms")
    finally:
        pub.kill()
        pub.wait()
        for e in edges:
            e.stop()
            shutil.rmtree(e.prefix, ignore_errors=True)
        origin.cleanup()


if __name__ == "__main__":
    main()
