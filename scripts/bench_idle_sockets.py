#!/usr/bin/env python3
"""What an unauthenticated RTMP connection costs: worker RSS per idle socket (connected,
nothing sent) and per socket that has sent a full C0+C1 and stalls (the handshake buffer).
Figures, not assertions.

    python3 scripts/bench_idle_sockets.py [--sockets 2000] [--runs 3]

Needs build/ (scripts/build.sh). One worker, rtmp_live_handshake_timeout raised to 60s so
the sockets live through the measurement. Prints the median over runs.
"""

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Vid  # noqa: E402


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(n, send_c0c1):
    vid = Vid(workers=1, stream_extra="rtmp_live_handshake_timeout 60s;")
    conf = vid.prefix / "conf" / "nginx.conf"
    conf.write_text(conf.read_text().replace("worker_connections 4096;", f"worker_connections {n + 200};"))
    vid.start()
    socks = []
    try:
        pid = vid.worker_pids()[0]
        time.sleep(0.5)
        before = rss_kb(pid)
        hello = b"\x03" + bytes(1536)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", vid.rtmp_port))
            if send_c0c1:
                s.sendall(hello)
            socks.append(s)
        time.sleep(1.5)
        after = rss_kb(pid)
        return (after - before) * 1024 / n
    finally:
        for s in socks:
            s.close()
        vid.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    for label, c0c1 in (("idle (nothing sent)", False), ("stalled after C0+C1", True)):
        per = [measure(a.sockets, c0c1) for _ in range(a.runs)]
        print(f"{label}: {statistics.median(per):.0f} bytes of worker RSS per socket "
              f"(median of {a.runs} runs of {a.sockets} sockets; runs: {', '.join(f'{x:.0f}' for x in per)})")


if __name__ == "__main__":
    main()
