#!/usr/bin/env python3
"""LL-HLS figures for vid (not assertions): part wake-up delay across workers and
playlist requests/s with and without LL-HLS.

    python3 scripts/bench_ll.py [--workers 4] [--seconds 30] [--clients 4] [--wrk-runs 3]

Needs build/ (scripts/build.sh), ffmpeg and wrk. Prints medians / p99 and the commands.

1. Part availability. An FLV file (ffmpeg, 30 fps, 1 s GOP, AAC) is replayed in real time
   by a Python RTMP publisher (tests/rtmp_client.py) that records when each tag was sent
   (wall clock, just before the send, which loopback delivers at once).
   A few clients loop on blocking reloads for the next part (`_HLS_msn=M&_HLS_part=N`),
   each on one keep-alive connection, as players do. A part is complete when the video
   frame that starts the next part arrives (the segmenter holds the newest frame until its
   successor gives it a duration), so the delay of a response is: the kernel's arrival
   stamp of the response's first bytes on the client socket (SO_TIMESTAMPNS, so the
   clients' own speed does not count) - the send time of the video tag whose timestamp is
   the part's end (its tfdt + sample durations, read from the part itself).
2. Playlist requests/s: wrk -t2 -c64 -d10s on /live/KEY/index.m3u8 (LL-HLS) and on
   /plain/KEY/index.m3u8 (`hls_live_low_latency off`, same stream), median of N runs.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import DEBIAN_FFMPEG, Vid, wait_for  # noqa: E402
from rtmp_client import RtmpPublisher, read_flv  # noqa: E402
from bench_held import SO_TIMESTAMPNS, read_response  # noqa: E402

KEY = "bench"


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def make_flv(path, seconds):
    cmd = [DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
           "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", "flv", str(path)]
    print("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def conf_edit(text):
    """Adds /plain/ (no LL-HLS) and an X-Worker header telling which worker answered."""
    plain = ("        location /plain/ {\n            hls_live on;\n            hls_live_low_latency off;\n"
             "            add_header X-Worker $pid always;\n        }\n\n")
    text = text.replace("        location /live/ {", plain + "        location /live/ {", 1)
    return text.replace("            hls_live on;                # http",
                        "            add_header X-Worker $pid always;\n            hls_live on;                # http", 1)


def start_vid(workers):
    v = Vid(workers=workers, segment="1s", part="200ms", window=12)
    conf = v.prefix / "conf" / "nginx.conf"
    conf.write_text(conf_edit(conf.read_text()))
    return v.start()


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers, r.read()


# -------------------------------------------------------------------- fMP4 (part end time)

def boxes(data, start=0, end=None):
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        hdr = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            hdr = 16
        if size < hdr:
            return
        yield kind, pos + hdr, pos + size
        pos += size


def video_end_ticks(part, track_id=1):
    """End of the video run of a part (fragment): tfdt + sum of sample durations (90 kHz)."""
    for kind, b, e in boxes(part):
        if kind != b"moof":
            continue
        for k2, b2, e2 in boxes(part, b, e):
            if k2 != b"traf":
                continue
            tid = default_dur = None
            base = 0
            total = 0
            for k3, b3, e3 in boxes(part, b2, e2):
                body = part[b3:e3]
                flags = int.from_bytes(body[1:4], "big")
                if k3 == b"tfhd":
                    tid = struct.unpack(">I", body[4:8])[0]
                    p = 8 + (8 if flags & 1 else 0) + (4 if flags & 2 else 0)
                    if flags & 8:
                        default_dur = struct.unpack(">I", body[p:p + 4])[0]
                elif k3 == b"tfdt":
                    base = struct.unpack(">Q", body[4:12])[0] if body[0] == 1 else struct.unpack(">I", body[4:8])[0]
                elif k3 == b"trun":
                    n = struct.unpack(">I", body[4:8])[0]
                    p = 8 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0)
                    per = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
                    for i in range(n):
                        total += struct.unpack(">I", body[p:p + 4])[0] if flags & 0x100 else (default_dur or 0)
                        p += per
            if tid == track_id:
                return base + total
    return None


# -------------------------------------------------------------------- 1. part wake-up delay

def bench_parts(workers, seconds, clients):
    print(f"\n== part availability: {workers} workers, {clients} clients, {seconds} s of 30 fps / 1 s GOP, "
          "1 s segments, 200 ms parts")
    tmp = Path(tempfile.mkdtemp(prefix="vid-bench-"))
    v = None
    try:
        flv = tmp / "src.flv"
        make_flv(flv, seconds + 4)
        tags = read_flv(flv)
        v = start_vid(workers)
        pub = RtmpPublisher("127.0.0.1", v.rtmp_port, "live", KEY)
        stop = threading.Event()
        feeder = threading.Thread(target=pub.replay, args=(tags,), kwargs={"stop": stop.is_set}, daemon=True)
        feeder.start()
        base = v.url(f"/live/{KEY}/index.m3u8")
        wait_for(lambda: _ok(base), 20, what="playlist")
        ingest = re.findall(r"(\d+)#\d+: \*\d+ rtmp: publish", v.log())
        ingest_pid = int(ingest[-1]) if ingest else None
        results = []  # (client, part uri, t_response, worker pid)
        ends = {}  # part uri -> end of its video (90 kHz)
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        path = f"/live/{KEY}/index.m3u8"

        def client(ci):
            _, _, body = get(base)
            hint = re.search(rb'PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"', body)
            m, p = int(hint.group(1)), int(hint.group(2))
            sock = None
            while time.monotonic() < deadline:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", v.http_port), timeout=30)
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                asked = time.time()
                sock.sendall(f"GET {path}?_HLS_msn={m}&_HLS_part={p} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                try:
                    t, status, headers, body = read_response(sock)
                except (OSError, ConnectionError):
                    sock.close()
                    sock = None
                    continue
                if status != 200 or t is None:
                    continue
                uri = f"{m}.{p}.m4s"
                with lock:
                    results.append((ci, uri, t, int(headers.get("x-worker", 0)), asked))
                if ci == 0:  # read the part's end time while it is kept
                    ends[uri] = video_end_ticks(get(v.url(f"/live/{KEY}/{uri}"))[2])
                hint = re.search(rb'PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"', body)
                m, p = int(hint.group(1)), int(hint.group(2))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        feeder.join(5)
        pub.close()
        # Video frames (AVC NALU packets, not the sequence header) by timestamp relative to
        # the first one: the segmenter's timeline origin.
        vsent = [(s, tag.ts) for s, tag in pub.sent if tag.kind == 9 and len(tag.data) > 1 and tag.data[1] == 1]
        origin = vsent[0][1]
        by_ts = {}
        for s, ts in vsent:
            by_ts.setdefault(ts - origin, s)
        delays, exact, late, per_worker = [], 0, 0, {}
        for ci, uri, t, pid, asked in results:
            end = ends.get(uri)
            if end is None:
                continue
            end_ms = end / 90.0
            key = int(round(end_ms))
            if key in by_ts:
                exact += 1
                sent = by_ts[key]
            else:  # nearest video tag at or after the part end
                later = [ts for ts in by_ts if ts >= end_ms]
                if not later:
                    continue
                sent = by_ts[min(later)]
            if asked >= sent:  # asked after the part was complete: not a held request
                late += 1
                continue
            d = (t - sent) * 1000
            delays.append(d)
            per_worker.setdefault("ingest worker" if pid == ingest_pid else "other workers", []).append(d)
        # Arrival spacing of one client against the part cadence.
        c0 = [t for ci, _, t, _, _ in results if ci == 0]
        gaps = [(b - a) * 1000 for a, b in zip(c0, c0[1:])]
        print(f"responses: {len(results)} ({len(delays)} held ones matched to the frame that completed the "
              f"part, {exact} exactly by timestamp; {late} asked after the part was complete, left out); "
              f"ingest worker pid {ingest_pid}")
        print(f"part complete -> response delay: median {statistics.median(delays):.1f} ms, "
              f"p90 {pct(delays, 90):.1f} ms, p99 {pct(delays, 99):.1f} ms, max {max(delays):.1f} ms")
        for k, vals in sorted(per_worker.items()):
            print(f"  {k}: n={len(vals)} median {statistics.median(vals):.1f} ms, p99 {pct(vals, 99):.1f} ms")
        print(f"client 0 arrival spacing (part target 200 ms): median {statistics.median(gaps):.1f} ms, "
              f"p1 {pct(gaps, 1):.1f} ms, p99 {pct(gaps, 99):.1f} ms")
    finally:
        if v:
            v.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def _ok(url):
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except Exception:
        return False


# -------------------------------------------------------------------- 2. playlist req/s

def bench_wrk(workers, runs, duration):
    if runs <= 0:
        print("\n== playlist requests/s: skipped (--wrk-runs 0)")
        return
    wrk = shutil.which("wrk")
    if not wrk:
        print("\n== wrk not installed (apt-get install wrk): skipping playlist requests/s")
        return
    print(f"\n== playlist requests/s: {workers} nginx workers, wrk -t2 -c64 -d{duration}s, median of {runs}")
    tmp = Path(tempfile.mkdtemp(prefix="vid-bench-"))
    v = None
    try:
        flv = tmp / "src.flv"
        total = runs * 2 * (duration + 2) + 15
        make_flv(flv, total)
        tags = read_flv(flv)
        v = start_vid(workers)
        pub = RtmpPublisher("127.0.0.1", v.rtmp_port, "live", KEY)
        stop = threading.Event()
        feeder = threading.Thread(target=pub.replay, args=(tags,), kwargs={"stop": stop.is_set}, daemon=True)
        feeder.start()
        ll_url = v.url(f"/live/{KEY}/index.m3u8")
        plain_url = v.url(f"/plain/{KEY}/index.m3u8")
        wait_for(lambda: _ok(ll_url), 20, what="playlist")
        time.sleep(4)  # a few segments listed
        sizes = {name: len(get(u)[2]) for name, u in (("LL-HLS", ll_url), ("plain", plain_url))}
        rates = {"LL-HLS": [], "plain": []}
        for i in range(runs):
            for name, url in (("LL-HLS", ll_url), ("plain", plain_url)):
                cmd = [wrk, "-t2", "-c64", f"-d{duration}s", url]
                if i == 0:
                    print("$ " + " ".join(cmd))
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                rates[name].append(rps)
                print(f"  run {i + 1} {name}: {rps:.0f} req/s" + (f" ({non2xx.group(1)} non-2xx)" if non2xx else ""))
        for name, r in rates.items():
            print(f"{name}: median {statistics.median(r):.0f} req/s (runs {', '.join(f'{x:.0f}' for x in r)}), "
                  f"playlist {sizes[name]} bytes")
        stop.set()
        feeder.join(5)
        pub.close()
    finally:
        if v:
            v.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=30, help="length of the part-delay run")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--wrk-runs", type=int, default=3)
    ap.add_argument("--wrk-duration", type=int, default=10)
    ap.add_argument("--wrk-workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--skip-parts", action="store_true")
    ap.add_argument("--skip-wrk", action="store_true")
    a = ap.parse_args()
    print("$ " + " ".join([sys.executable] + sys.argv))
    print(f"host: {os.cpu_count()} CPUs, {os.uname().release}")
    steps = [s for s, skip in (("part availability", a.skip_parts), ("playlist requests/s", a.skip_wrk)) if not skip]
    for i, name in enumerate(steps, 1):
        print(f"\n== [step {i}/{len(steps)}] {name}", flush=True)
        if name == "part availability":
            bench_parts(a.workers, a.seconds, a.clients)
        else:
            bench_wrk(a.wrk_workers, a.wrk_runs, a.wrk_duration)


if __name__ == "__main__":
    main()
