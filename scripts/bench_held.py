#!/usr/bin/env python3
"""Held requests at scale (figures, not assertions): one vid worker holding 10,000
blocking playlist reloads, as 1 stream x 10,000 waiters and as 100 streams x 100.

    python3 scripts/bench_held.py [--layouts 1x10000,100x100] [--runs 3]

Needs build/ (scripts/build.sh), Debian ffmpeg, and for the peer Debian nginx with
libnginx-mod-rtmp (scripts/deps.sh bench). Prints medians over the runs and the
commands.

Per run and layout:
1. S streams are published by S Python RTMP publishers (tests/rtmp_client.py) replaying
   a small FLV (320x240, 30 fps, 1 s GOP, AAC) in real time; 4 s segments, so a request
   may be held for 12 s. After 5 s of media every publisher pauses (connected, sending
   nothing): the streams stop changing.
2. N = S x W clients (one connection each) send a blocking reload for the
   next part of their stream (`_HLS_msn`/`_HLS_part` from the preload hint) and are
   held. Measured: the worker's RSS growth per held request, and its CPU over 4 s while
   the 10,000 wait on streams that do not change.
3. The publishers resume. Every request must be answered 200 with a playlist that lists
   the part it waited for. Measured: per stream, the time from the first answer (the
   part landed) to the last answer of that stream (the release latency of the last
   waiter), from the kernel's arrival stamps on the client sockets (SO_TIMESTAMPNS);
   the worst stream and the median stream.

The peer (Debian nginx + nginx-rtmp-module, scripts/bench/peer.conf.in) has no held
requests. What holding a request costs in nginx at all is measured on it: the same N
connections send a request that stock nginx keeps waiting in a limit_req burst queue
(a timer per request, as vid's held requests wait on vid's registry); the ratio vid /
stock nginx of worker memory per waiting request is printed.
"""

import argparse
import os
import re
import resource
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import bench  # noqa: E402
from rtmp_client import RtmpPublisher, read_flv  # noqa: E402

HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"')
PAUSE_AT_MS = 5_000


class HeldVid(bench.Vid):
    """vid with 4 s segments (hold limit 12 s) and room for 10,000+ connections."""

    def write_config(self):
        media = os.path.join(self.prefix, "media")
        os.makedirs(media)
        os.chmod(media, 0o1777)
        env = dict(os.environ, HLS_SEGMENT="4s", HLS_PART="200ms", HLS_WINDOW="6", HLS_TS="off")
        conf = subprocess.run([bench.RENDER_CONF, self.prefix, str(self.rtmp_port), str(self.http_port),
                               str(self.workers)], check=True, capture_output=True, text=True, env=env).stdout
        conf = conf.replace("worker_connections 4096;", "worker_connections 16384;", 1)
        conf = "worker_rlimit_nofile 40000;\n" + conf
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)


class HeldPeer(bench.Peer):
    """The peer, plus a location where stock nginx itself holds requests: limit_req with
    a burst queue (each request waits on a timer), nginx's own way to keep a request
    waiting. Its memory per waiting request is what holding costs in nginx at all."""

    def write_config(self):
        super().write_config()
        path = os.path.join(self.prefix, "conf", "nginx.conf")
        with open(path) as f:
            conf = f.read()
        conf = conf.replace("worker_connections 4096;", "worker_connections 16384;", 1)
        conf = "worker_rlimit_nofile 40000;\n" + conf
        conf = conf.replace("\nhttp {\n", "\nhttp {\n    limit_req_zone $binary_remote_addr zone=held:1m rate=1r/m;\n", 1)
        conf = conf.replace("        location /hls/ {", "        location /held/ {\n            limit_req zone=held burst=40000;\n"
                            "            limit_req_log_level info;\n            root " + self.prefix + ";\n        }\n\n"
                            "        location /hls/ {", 1)
        with open(path, "w") as f:
            f.write(conf)


def make_flv(path):
    cmd = [bench.FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "30",
           "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv", path]
    print("$ " + shlex.join(cmd))
    subprocess.run(cmd, check=True)


class Publisher(threading.Thread):
    """Replays the FLV: media before PAUSE_AT_MS, then waits for `go`, then the rest."""

    def __init__(self, port, key, tags, go):
        super().__init__(daemon=True)
        self.port, self.key, self.tags, self.go = port, key, tags, go
        self.paused = threading.Event()
        self.error = None

    def run(self):
        try:
            pub = RtmpPublisher("127.0.0.1", self.port, "live", self.key)
            first = [t for t in self.tags if t.kind not in (8, 9) or t.ts < PAUSE_AT_MS]
            rest = [t for t in self.tags if t.kind in (8, 9) and t.ts >= PAUSE_AT_MS]
            pub.replay(first)
            self.paused.set()
            self.go.wait()
            pub.replay(rest)
            pub.close()
        except Exception as e:  # reported by the run
            self.error = e
            self.paused.set()


def rss_kib(pid):
    return bench.memory_kib(pid)[0]


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


def read_response(sock):
    """(kernel arrival time of the response's first bytes, status, lower-case headers,
    body) of one response on a blocking keep-alive socket with SO_TIMESTAMPNS."""
    data, anc, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16))
    if not data:
        raise ConnectionError("closed")
    arrived = None
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", raw[:16])
            arrived = sec + nsec / 1e9
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed")
        body += more
    return arrived, status, headers, body


def open_sockets(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        socks.append(s)
    return socks


def held_requests(port):
    text = bench.fetch(f"http://127.0.0.1:{port}/metrics").decode()
    return sum(float(x) for x in re.findall(r"^vid_worker_held_requests\{[^}]*\} (\S+)$", text, re.M))


def held_run(server, streams, waiters, go):
    """Hold streams x waiters requests, measure, resume, collect the answers. The
    release time of each answer is the kernel's arrival stamp on the client socket
    (SO_TIMESTAMPNS), so the client's own speed does not count."""
    port = server.http_port
    worker = server.worker_pids()[0]
    # The next part of each stream, from its playlist.
    targets = {}
    for s in range(streams):
        m = HINT.search(bench.fetch(f"http://127.0.0.1:{port}/live/h{s}/index.m3u8"))
        if not m:
            raise bench.BenchError(f"stream h{s}: no playlist with a preload hint")
        targets[s] = (int(m.group(1)), int(m.group(2)))
    n = streams * waiters
    socks = open_sockets(port, n)
    time.sleep(1)
    base = rss_kib(worker)
    for i, sock in enumerate(socks):
        msn, part = targets[i % streams]
        sock.sendall(f"GET /live/h{i % streams}/index.m3u8?_HLS_msn={msn}&_HLS_part={part} HTTP/1.1\r\n"
                     "Host: bench\r\n\r\n".encode())
    deadline = time.monotonic() + 30
    while held_requests(port) < n:
        if time.monotonic() > deadline:
            raise bench.BenchError(f"only {held_requests(port):.0f} of {n} requests held")
        time.sleep(0.3)
    rss_held = rss_kib(worker)
    c0, t0 = bench.cpu_seconds(worker), time.monotonic()
    time.sleep(4)
    cpu = (bench.cpu_seconds(worker) - c0) / (time.monotonic() - t0)
    go.set()
    arrivals = {}
    bad = []
    for i, sock in enumerate(socks):
        s = i % streams
        msn, part = targets[s]
        try:
            arrived, status, _, body = read_response(sock)
        except OSError as e:
            bad.append(repr(e))
            continue
        finally:
            sock.close()
        if status != 200 or f'URI="{msn}.{part}.m4s"'.encode() not in body or arrived is None:
            bad.append((s, status))
        else:
            arrivals.setdefault(s, []).append(arrived)
    spreads = sorted(max(ts) - min(ts) for ts in arrivals.values())
    return {
        "held": n,
        "answered_ok": sum(len(ts) for ts in arrivals.values()),
        "bad": len(bad),
        "bad_sample": bad[:3],
        "kib_per_held": (rss_held - base) / n,
        "cpu_while_held": cpu,
        "last_waiter_ms_worst": 1000 * spreads[-1] if spreads else None,
        "last_waiter_ms_median": 1000 * statistics.median(spreads) if spreads else None,
    }


def peer_run(server, n, key):
    """N requests that stock nginx holds (limit_req burst queue): worker RSS growth per
    waiting request, with the connections opened before the base is taken as for vid."""
    worker = server.worker_pids()[0]
    socks = open_sockets(server.http_port, n)
    time.sleep(1)
    base = rss_kib(worker)
    for sock in socks:
        sock.sendall(f"GET /held/{key} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    time.sleep(3)
    used = rss_kib(worker) - base
    for sock in socks:
        sock.close()
    return used / n


def one_layout(streams, waiters, tags, workdir):
    go = threading.Event()
    vid = HeldVid("vid", workers=1)
    with vid.running(workdir):
        pubs = [Publisher(vid.rtmp_port, f"h{s}", tags, go) for s in range(streams)]
        for p in pubs:
            p.start()
            time.sleep(0.01)
        for p in pubs:
            p.paused.wait(60)
            if p.error:
                raise bench.BenchError(f"publisher {p.key}: {p.error!r}")
        time.sleep(0.5)
        result = held_run(vid, streams, waiters, go)
        for p in pubs:
            p.join(60)
    return result


def peer_layout(n, flv, workdir):
    peer = HeldPeer("peer", workers=1)
    with peer.running(workdir):
        argv = [bench.FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                "-i", flv, "-c", "copy", "-f", "flv", peer.publish_url("p0")]
        with bench.process_group(argv, os.path.join(peer.prefix, "logs", "ffmpeg.log")):
            deadline = time.monotonic() + 30
            while True:
                try:
                    bench.fetch(peer.playlist_url("p0"))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise bench.BenchError("peer: no playlist")
                    time.sleep(0.3)
            return peer_run(peer, n, "p0")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layouts", default="1x10000,100x100", help="STREAMSxWAITERS,...")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print("$ " + shlex.join([sys.executable] + sys.argv))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536, hard))
    workdir = tempfile.mkdtemp(prefix="vid-bench-held-")
    os.chmod(workdir, 0o755)  # workers run as nobody when started as root
    flv = os.path.join(workdir, "in.flv")
    make_flv(flv)
    tags = read_flv(flv)
    layouts = [tuple(int(x) for x in l.split("x")) for l in args.layouts.split(",")]
    rows = []
    for streams, waiters in layouts:
        n = streams * waiters
        runs = []
        for r in range(args.runs):
            res = one_layout(streams, waiters, tags, workdir)
            print(f"vid {streams}x{waiters} run {r + 1}: {res}", flush=True)
            runs.append(res)
        peer = [peer_layout(n, flv, workdir) for _ in range(args.runs)]
        print(f"peer: stock nginx holding {n} requests (limit_req queue): KiB each {[round(p, 2) for p in peer]}",
              flush=True)
        med = lambda k: statistics.median(x[k] for x in runs)  # noqa: E731
        rows.append((f"{streams}x{waiters}", n, min(x["answered_ok"] for x in runs), sum(x["bad"] for x in runs),
                     med("kib_per_held"), statistics.median(peer), 100 * med("cpu_while_held"),
                     med("last_waiter_ms_median"), med("last_waiter_ms_worst")))
    print()
    print("layout      held  answered-ok(min)  bad  KiB/held  stock-nginx KiB/held  ratio  CPU% while held  "
          "last waiter ms (median stream / worst stream)")
    for lay, n, ok, bad, kib, pkib, cpu, lmed, lworst in rows:
        print(f"{lay:10} {n:6} {ok:17} {bad:4} {kib:9.2f} {pkib:21.2f} {kib / pkib:6.2f} {cpu:16.2f}  "
              f"{lmed:.1f} / {lworst:.1f}")
    print(f"\nmedians of {args.runs} runs; one worker; 4 s segments, 200 ms parts")


if __name__ == "__main__":
    main()
