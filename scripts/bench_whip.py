#!/usr/bin/env python3
"""Ingest CPU of WHIP (WebRTC: SRTP, RTP depacketizing, jitter buffer) against RTMP, same
machine, same run, same video at the same bit rate.

    python3 scripts/bench_whip.py [--publishers 4] [--seconds 20] [--repeat 3] [--workers 2]

The input: 60 s of 1280x720 at 30 fps, H.264 constrained baseline (what WebRTC carries)
at ~3 Mbit/s with a 2 s GOP, made once with ffmpeg 9 (imageio-ffmpeg), with 128 kbit/s
Opus for WHIP and 128 kbit/s AAC for RTMP beside the same video. N ffmpeg publishers
loop it in real time with `-c copy`:

  vid-rtmp  vid, `-f flv rtmp://…/live/sN`
  vid-whip  vid, `-f whip http://…/whip/wN` (ICE, DTLS-SRTP, RTP/RTCP over loopback UDP)
  peer      nginx-rtmp-module (Debian libnginx-mod-rtmp), `-f flv`, as scripts/bench.py
            runs it (MPEG-TS HLS, 2 s fragments)

Per mode, median over --repeat runs: server CPU seconds (user + system of the master and
all its children) per stream-minute, over --seconds once every stream has a playlist, and
the largest worker's private heap (RssAnon). Prints the medians and the ratios
vid-whip/vid-rtmp, vid-rtmp/peer and vid-whip/peer. Figures, not assertions.

Prerequisites: scripts/build.sh, scripts/deps.sh bench (the peer), imageio-ffmpeg.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from contextlib import ExitStack, contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import bench  # noqa: E402  (servers, process groups, CPU and memory readings)

INPUT = "bench-whip-720p30-3M.mkv"


def modern_ffmpeg():
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001
        raise bench.BenchError(f"imageio-ffmpeg (ffmpeg with the whip muxer) is needed: {e}") from None


def make_input(ffmpeg, cache_dir):
    """Video + AAC (stream a:0) + Opus (a:1), one file."""
    path = os.path.join(cache_dir, INPUT)
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    bench.log(f"making the input once: {path} (60 s, 720p30 constrained baseline ~3 Mbit/s, AAC + Opus)")
    tmp = path + ".tmp.mkv"
    subprocess.run([ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "60",
                    "-map", "0:v", "-map", "1:a", "-map", "1:a",
                    "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-b:v", "3M", "-maxrate", "3M", "-bufsize", "3M", "-bf", "0",
                    "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
                    "-c:a:0", "aac", "-b:a:0", "128k", "-c:a:1", "libopus", "-b:a:1", "128k", "-ac", "2",
                    tmp], check=True)
    os.replace(tmp, path)
    return path


class Vid(bench.Vid):
    def write_config(self):
        media = os.path.join(self.prefix, "media")
        os.makedirs(media)
        os.chmod(media, 0o1777)
        env = dict(os.environ, WHIP_UDP=f"127.0.0.1:{bench.free_ports(1)[0]}")
        conf = subprocess.run([bench.RENDER_CONF, self.prefix, str(self.rtmp_port), str(self.http_port),
                               str(self.workers)], check=True, capture_output=True, text=True, env=env).stdout
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)


@contextmanager
def publishers(ffmpeg, server, mode, count, input_path):
    with ExitStack() as stack:
        procs = []
        for i in range(count):
            if mode == "whip":
                key = f"w{i}"
                out = ["-map", "0:v", "-map", "0:a:1", "-c", "copy", "-f", "whip",
                       f"http://127.0.0.1:{server.http_port}/whip/{key}"]
            else:
                key = f"s{i}"
                out = ["-map", "0:v", "-map", "0:a:0", "-c", "copy", "-f", "flv", server.publish_url(key)]
            argv = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
                    "-re", "-stream_loop", "-1", "-i", input_path, *out]
            log_path = os.path.join(server.prefix, "logs", f"ffmpeg-{key}.log")
            procs.append((key, log_path, stack.enter_context(bench.process_group(argv, log_path))))
        yield procs


def measure(ffmpeg, server_cls, mode, count, seconds, input_path, workdir, workers):
    server = server_cls(name="vid" if server_cls is Vid else "peer", workers=workers)
    with server.running(workdir), publishers(ffmpeg, server, mode, count, input_path) as procs:
        bench.wait_for_playlists(server, procs)
        time.sleep(2)  # past the handshakes and the first keyframes
        pids = server.pids()
        start_cpu, start = bench.cpu_times(pids), time.monotonic()
        anon = 0
        while time.monotonic() - start < seconds:
            anon = max([anon] + [bench.memory_kib(p)[2] for p in server.worker_pids()])
            time.sleep(0.5)
        end_cpu, elapsed = bench.cpu_times(pids), time.monotonic() - start
        bench.check_publishers(procs)
    cpu = sum(end_cpu[p] - start_cpu[p] for p in end_cpu if p in start_cpu)
    return cpu / (count * elapsed / 60.0), anon / 1024.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "target"))
    args = p.parse_args(argv)
    ffmpeg = modern_ffmpeg()
    for path in (bench.VID_NGINX, bench.VID_MODULE, bench.PEER_NGINX, bench.PEER_MODULE):
        if not os.path.exists(path):
            raise bench.BenchError(f"missing {path} (scripts/build.sh, scripts/deps.sh bench)")
    input_path = make_input(ffmpeg, args.cache_dir)
    modes = [("vid-rtmp", Vid, "rtmp"), ("vid-whip", Vid, "whip"), ("peer", bench.Peer, "rtmp")]
    results = {name: [] for name, _, _ in modes}
    workdir = tempfile.mkdtemp(prefix="vid-bench-whip-")
    os.chmod(workdir, 0o755)
    print(f"{args.publishers} publishers per mode, {args.seconds:.0f} s windows, {args.repeat} runs, "
          f"{args.workers} workers; {bench.first_line([ffmpeg, '-version'])}; {os.cpu_count()} CPUs")
    print(f"$ {' '.join(sys.argv)}")
    for r in range(args.repeat):
        order = modes if r % 2 == 0 else list(reversed(modes))
        for name, cls, mode in order:
            cpu, anon = measure(ffmpeg, cls, mode, args.publishers, args.seconds, input_path, workdir, args.workers)
            results[name].append((cpu, anon))
            print(f"run {r + 1} {name:9} CPU {cpu:6.2f} s per stream-minute, worker heap {anon:6.1f} MiB")
            sys.stdout.flush()
    med = {n: (statistics.median(c for c, _ in v), statistics.median(a for _, a in v)) for n, v in results.items()}
    print()
    print(f"{'median':26}{'vid-rtmp':>10}{'vid-whip':>10}{'peer':>10}")
    print(f"{'CPU s per stream-minute':26}" + "".join(f"{med[n][0]:>10.2f}" for n in ("vid-rtmp", "vid-whip", "peer")))
    print(f"{'worker heap (MiB)':26}" + "".join(f"{med[n][1]:>10.1f}" for n in ("vid-rtmp", "vid-whip", "peer")))
    print(f"ratios (CPU): vid-whip/vid-rtmp {med['vid-whip'][0] / med['vid-rtmp'][0]:.2f}, "
          f"vid-rtmp/peer {med['vid-rtmp'][0] / med['peer'][0]:.2f}, vid-whip/peer {med['vid-whip'][0] / med['peer'][0]:.2f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.BenchError as e:
        print(f"bench_whip: {e}", file=sys.stderr)
        sys.exit(1)
    except urllib.error.URLError as e:
        print(f"bench_whip: {e}", file=sys.stderr)
        sys.exit(1)
