#!/usr/bin/env python3
"""Recording and catalog cost, with the machinery of scripts/bench.py:
  1. ingest CPU seconds per stream-minute with hls_live_record off and on, in the same
     run (alternating, same input, same measuring), and the ratio (target: <= 1.10);
  2. catalog writes per second one origin sustains: N session rows dropped into a
     running origin's spool, applied by its writer thread into SQLite; rows/s from the
     first to the last row seen.
Prints medians and ratios.

    python3 scripts/bench_record.py [--publishers 4] [--seconds 20] [--repeat 3] [--rows 20000]
"""

import argparse
import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (scripts/bench.py)


class RecordingVid(bench.Vid):
    """vid with hls_live_record on (and optionally another catalog)."""

    record = True
    catalog = None

    def write_config(self):
        super().write_config()
        path = os.path.join(self.prefix, "conf", "nginx.conf")
        conf = open(path).read()
        if self.record:
            conf = conf.replace("rtmp_live live;", "rtmp_live live;\n        hls_live_record on;", 1)
        if self.catalog:
            conf = conf.replace("hls_live_zone live 64m;", f'hls_live_zone live 64m;\n    hls_live_catalog "{self.catalog}";', 1)
        open(path, "w").write(conf)


def measure(record, count, seconds, input_path, workdir):
    v = RecordingVid("vid", 2)
    v.record = record
    r = bench.measure_load(v, count, seconds, input_path, workdir)
    bench.log(f"record {'on ' if record else 'off'}: {r.cpu_per_stream_minute:.4f} CPU s/stream-min")
    return r.cpu_per_stream_minute


def spool_line(i, now_ms):
    f = [
        "bench", f"k{i % 500}/20260101T000000Z-{i}", f"k{i % 500}", str(now_ms), str(now_ms + 60000),
        "60000", "12345678", "30", "0", f"/var/lib/vid/.recordings/k{i % 500}/{i}",
        f"/recordings/k{i % 500}/{i}/index.m3u8", "avc1.64001f", "mp4a.40.2", "1280", "720", "30", "3000000",
        "3500000",
    ]
    return "vid-catalog-1\tS\t" + "\t".join(f) + "\n"


def catalog_rate(rows, workdir, catalog=None, count_rows=None):
    """Rows/s the writer thread of a running origin applies from its spool."""
    v = RecordingVid("vid", 1)
    v.record = False
    v.catalog = catalog
    with v.running(workdir):
        media = os.path.join(v.prefix, "media")
        spool = os.path.join(media, "catalog.spool")
        db = os.path.join(media, "catalog.sqlite")
        if count_rows is None:
            deadline = time.monotonic() + 10
            while not os.path.exists(db) and time.monotonic() < deadline:
                time.sleep(0.1)

            def count_rows():
                c = sqlite3.connect(db, timeout=5)
                try:
                    return c.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
                finally:
                    c.close()
        deadline = time.monotonic() + 20
        while True:  # the writer creates the schema at start
            try:
                base = count_rows()
                break
            except sqlite3.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # Written first under a staging folder, then moved into place at once (the spool
        # folder does not exist before the first event), so the writer, not this loop,
        # sets the pace.
        stage = os.path.join(media, "stage")
        os.makedirs(stage)
        os.chmod(stage, 0o777)  # the workers (nobody, when run as root) delete what they applied
        now = int(time.time() * 1000)
        for i in range(rows):
            with open(os.path.join(stage, f"{now:013}-1-{i:08}.ev"), "w") as f:
                f.write(spool_line(i, now))
        if os.path.exists(spool):
            raise bench.BenchError("the spool folder exists already")
        os.rename(stage, spool)
        first = last = None
        n = base
        deadline = time.monotonic() + 600
        while n < base + rows and time.monotonic() < deadline:
            n = count_rows()
            t = time.monotonic()
            if n > base and first is None:
                first = (t, n)
            last = (t, n)
            time.sleep(0.02)
        if n < base + rows:
            raise bench.BenchError(f"only {n - base} of {rows} rows applied")
    return (last[1] - first[1]) / max(1e-6, last[0] - first[0])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--catalog-only", action="store_true", help="skip the CPU comparison")
    p.add_argument("--cache-dir", default=os.path.join(bench.ROOT, "target"))
    args = p.parse_args()
    h264 = bench.make_input(args.cache_dir)
    off, on, rates = [], [], []
    with tempfile.TemporaryDirectory(prefix="vid-bench-record-") as workdir:
        os.chmod(workdir, 0o755)  # workers run as nobody when started as root
        for _ in range(0 if args.catalog_only else args.repeat):
            off.append(measure(False, args.publishers, args.seconds, h264, workdir))
            on.append(measure(True, args.publishers, args.seconds, h264, workdir))
        for _ in range(args.repeat):
            rates.append(catalog_rate(args.rows, workdir))
            bench.log(f"catalog (SQLite): {rates[-1]:.0f} rows/s")
    if off:
        m_off, m_on = bench.median(off), bench.median(on)
        print(f"\nrecording cost: {args.publishers} publishers, {args.seconds:.0f} s windows, median of {args.repeat}")
        print(f"{'case':<16} {'CPU s/stream-min':>16} {'ratio':>6}")
        print(f"{'record off':<16} {m_off:>16.4f} {1.0:>6.2f}")
        print(f"{'record on':<16} {m_on:>16.4f} {m_on / m_off:>6.2f}")
    print(f"\ncatalog writes one origin sustains ({args.rows} session rows, each a session and a stream upsert):")
    print(f"  SQLite      median {bench.median(rates):.0f} rows/s  (runs: {', '.join(f'{r:.0f}' for r in rates)})")
    print("input:", bench.describe_input(h264))
    print("command:", " ".join([sys.executable] + sys.argv))


if __name__ == "__main__":
    main()
