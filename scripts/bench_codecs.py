#!/usr/bin/env python3
"""vid's ingest cost by codec and output: CPU seconds per stream-minute for
  - H.264 + AAC, fMP4 only (the default),
  - H.264 + AAC, fMP4 + MPEG-TS (hls_live_ts on),
  - H.265 + AAC at the same bit rate (Enhanced RTMP, fMP4; TS is never made for HEVC),
in the same run, with the machinery of scripts/bench.py (same input, same measuring).
Prints medians and ratios to the first row.

    python3 scripts/bench_codecs.py [--publishers 4] [--seconds 20] [--repeat 3]
"""

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (scripts/bench.py)


def modern_ffmpeg():
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def hevc_input(h264_path, cache_dir):
    """The H.264 input re-encoded to H.265 at the same video bit rate (audio copied)."""
    path = os.path.join(cache_dir, "bench-input-720p30-3M-hevc.mp4")
    if os.path.exists(path):
        return path
    bench.log(f"making the HEVC input once: {path}")
    tmp = path + ".tmp.mp4"
    subprocess.run([modern_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-i", h264_path, "-c:v", "libx265", "-preset", "ultrafast", "-b:v", "3M",
                    "-x265-params", "keyint=60:min-keyint=60:scenecut=0:log-level=error",
                    "-tag:v", "hvc1", "-c:a", "copy", tmp], check=True)
    os.replace(tmp, path)
    return path


def measure(label, count, seconds, input_path, workdir, ts=False, ffmpeg=None):
    os.environ["HLS_TS"] = "on" if ts else "off"  # read by scripts/render-conf.sh
    saved = bench.FFMPEG
    bench.FFMPEG = ffmpeg or saved
    try:
        r = bench.measure_load(bench.Vid("vid", 2), count, seconds, input_path, workdir)
    finally:
        bench.FFMPEG = saved
        os.environ.pop("HLS_TS", None)
    bench.log(f"{label}: {r.cpu_per_stream_minute:.4f} CPU s/stream-min")
    return r.cpu_per_stream_minute


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cache-dir", default=os.path.join(bench.ROOT, "target"))
    args = p.parse_args()
    h264 = bench.make_input(args.cache_dir)
    hevc = hevc_input(h264, args.cache_dir)
    cases = [
        ("H.264, fMP4 only", dict(input_path=h264)),
        ("H.264, fMP4 + MPEG-TS", dict(input_path=h264, ts=True)),
        ("H.265, fMP4", dict(input_path=hevc, ffmpeg=modern_ffmpeg())),
    ]
    results = {label: [] for label, _ in cases}
    with tempfile.TemporaryDirectory(prefix="vid-bench-codecs-") as workdir:
        os.chmod(workdir, 0o755)  # workers run as nobody when started as root
        total = args.repeat * len(cases)
        for rep in range(args.repeat):
            for i, (label, kw) in enumerate(cases):
                bench.log(f"[{rep * len(cases) + i + 1}/{total}] {label}, run {rep + 1}/{args.repeat} "
                          f"({args.publishers} publishers, {args.seconds:g} s)")
                results[label].append(measure(label, args.publishers, args.seconds, workdir=workdir, **kw))
    base = bench.median(results[cases[0][0]])
    print(f"\nvid ingest cost by codec and output: {args.publishers} publishers, "
          f"{args.seconds:.0f} s windows, median of {args.repeat}")
    print(f"{'case':<24} {'CPU s/stream-min':>16} {'ratio':>6}")
    for label, _ in cases:
        m = bench.median(results[label])
        print(f"{label:<24} {m:>16.4f} {m / base:>6.2f}")
    print("inputs:", bench.describe_input(h264), "|", bench.describe_input(hevc))
    print("command:", " ".join([sys.executable] + sys.argv))


if __name__ == "__main__":
    main()
