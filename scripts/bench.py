#!/usr/bin/env python3
"""Benchmark vid against nginx-rtmp-module on this machine, in the same run.

Both servers take the same RTMP input and publish HLS with 2 s segments and a 24 s
window, with the same number of workers:

  vid    build/sbin/nginx + build/modules/libvid.so, config from scripts/render-conf.sh
         (fMP4/CMAF segments + 200 ms LL-HLS parts, playlists rendered per request)
  peer   Debian nginx + libnginx-mod-rtmp, config from scripts/bench/peer.conf.in
         (MPEG-TS segments, playlist written to disk and served as a static file)

Measured, per server, median over --repeat runs:
  1. for N publishers (`ffmpeg -re -stream_loop -1 -c copy`), over a window of --seconds
     once every stream has its first playlist: server CPU seconds (user + system time of
     the master and all its children) per stream-minute, and the largest worker VmRSS
     (also without shared memory, since vid's index zone is mapped into every worker,
     and its private heap alone, RssAnon: VmRSS also counts the code pages of nginx, the
     modules and libraries, which all processes running them share; and the memory
     only that worker has written, Private_Dirty of smaps_rollup: RssAnon also counts
     pages the worker still shares with the master since the fork, such as the module's
     relocated data and the configuration, which exist once for all workers);
  2. with one publisher live on each server, once the playlists hold a full window:
     playlist requests/s under `wrk -t2 -c64`, the servers' runs interleaved.

Prints a table with the medians, the vid/peer ratios and their targets (CPU per stream
<= 1.0, playlist req/s >= 0.9), and the command line. The targets are reported, not
asserted: the exit status is 0 when the run worked.

Prerequisites: scripts/build.sh (vid) and scripts/deps.sh bench (peer, ffmpeg, wrk).
Python 3 standard library only.
"""

import argparse
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VID_NGINX = os.path.join(ROOT, "build", "sbin", "nginx")
VID_MODULE = os.path.join(ROOT, "build", "modules", "libvid.so")
RENDER_CONF = os.path.join(ROOT, "scripts", "render-conf.sh")
PEER_TEMPLATE = os.path.join(ROOT, "scripts", "bench", "peer.conf.in")
PEER_NGINX = "/usr/sbin/nginx"
PEER_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"
WRK = "/usr/bin/wrk"

# The input: 60 s of 1280x720 at 30 fps, H.264 at ~3 Mbit/s with a 2 s GOP, plus AAC.
# Temporal noise over the test pattern keeps the encoder at its rate cap (a clean test
# pattern would come out far below 3 Mbit/s).
INPUT_NAME = "bench-input-720p30-3M.mp4"
INPUT_ARGS = [
    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "60",
    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
    "-b:v", "3M", "-maxrate", "3M", "-bufsize", "3M",
    "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
    "-c:a", "aac", "-b:a", "128k", "-ac", "2",
    "-movflags", "+faststart",
]

START_TIMEOUT = 10.0  # s for a server to accept connections
PLAYLIST_TIMEOUT = 30.0  # s for the first playlist of a stream (first segment is 2 s)
RSS_SAMPLE_INTERVAL = 0.5  # s between VmRSS samples during a window
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    """The run could not be carried out (not: a target was missed)."""


# ---------------------------------------------------------------------------------------
# Processes: every child runs in its own process group, killed as a group on the way out.


@contextmanager
def process_group(argv, log_path=None, **kwargs):
    """Starts argv in a new session; on exit terminates (then kills) its whole group."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, **kwargs)
    finally:
        if log_path:
            out.close()
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc, grace=5.0):
    """SIGTERM to the group, SIGKILL if the leader is not gone after grace seconds, and
    SIGKILL once more for anything left in the group (an nginx worker, say)."""
    signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait()
    signal_group(proc, signal.SIGKILL)


def signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def free_ports(count):
    """count distinct ports that are free on 127.0.0.1 right now."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def wait_for_port(port, proc, what, log_path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{what} does not listen on 127.0.0.1:{port}:\n{tail(log_path)}")


# ---------------------------------------------------------------------------------------
# /proc accounting


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat and stat["ppid"] == pid:
                kids.append(int(entry))
    return kids


def read_stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    fields = raw[raw.rindex(")") + 2:].split()
    return {"ppid": int(fields[1]), "ticks": int(fields[11]) + int(fields[12])}


def memory_kib(pid):
    """(VmRSS, RssShmem, RssAnon, Private_Dirty) of pid in KiB. VmRSS counts the shared-memory pages the
    process has touched (for vid: its hls_live_zone), so the figure without it is reported
    too; and the pages of program code mapped from files (nginx, modules, libraries), which
    every process running them shares, so the private heap (RssAnon) is reported too."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssShmem", "RssAnon"):
                    found[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    private = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "Private_Dirty":
                    private += int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return found.get("VmRSS", 0), found.get("RssShmem", 0), found.get("RssAnon", 0), private


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid):
    """CPU time (user + system) used so far by all threads of pid, or None if it is gone.

    This is what utime + stime in /proc/PID/stat count, but those come in clock ticks
    (10 ms): over a 20 s window one stream costs only a few ticks. The scheduler keeps the
    same figure in nanoseconds per thread in /proc/PID/task/TID/schedstat; use that where
    the kernel has it, and the ticks otherwise.
    """
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        stat = read_stat(pid)
        return stat["ticks"] / CLK_TCK if stat else None


def cpu_times(pids):
    times = {pid: cpu_seconds(pid) for pid in pids}
    return {pid: t for pid, t in times.items() if t is not None}


# ---------------------------------------------------------------------------------------
# The two servers


@dataclass
class Server:
    """One nginx instance under test, with its own prefix and ports."""

    name: str
    workers: int
    prefix: str = ""
    rtmp_port: int = 0
    http_port: int = 0
    proc: subprocess.Popen = None

    nginx = ""

    def publish_url(self, key):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    def playlist_url(self, key):
        raise NotImplementedError

    def write_config(self):
        raise NotImplementedError

    @contextmanager
    def running(self, workdir):
        """Starts the server in a fresh prefix under workdir; stops it on exit."""
        self.prefix = tempfile.mkdtemp(prefix=f"{self.name}-", dir=workdir)
        os.chmod(self.prefix, 0o755)
        for sub in ("conf", "logs", "tmp"):
            os.makedirs(os.path.join(self.prefix, sub))
        self.rtmp_port, self.http_port = free_ports(2)
        self.write_config()
        error_log = os.path.join(self.prefix, "logs", "error.log")
        argv = [self.nginx, "-p", self.prefix, "-c", "conf/nginx.conf",
                "-e", "logs/error.log", "-g", "daemon off;"]
        with process_group(argv, os.path.join(self.prefix, "logs", "stderr.log")) as proc:
            self.proc = proc
            wait_for_port(self.rtmp_port, proc, self.name, error_log)
            wait_for_port(self.http_port, proc, self.name, error_log)
            yield self

    def pids(self):
        """The master and all its children: workers, and nginx-rtmp's cache manager,
        which removes old HLS fragments (part of the peer's work, so it is counted)."""
        return [self.proc.pid] + children_of(self.proc.pid)

    def worker_pids(self):
        return [pid for pid in children_of(self.proc.pid)
                if cmdline(pid).startswith("nginx: worker process")]


class Vid(Server):
    nginx = VID_NGINX

    def playlist_url(self, key):
        return f"http://127.0.0.1:{self.http_port}/live/{key}/index.m3u8"

    def write_config(self):
        media = os.path.join(self.prefix, "media")
        os.makedirs(media)
        os.chmod(media, 0o1777)  # workers run as nobody when started as root
        conf = subprocess.run(
            [RENDER_CONF, self.prefix, str(self.rtmp_port), str(self.http_port),
             str(self.workers)],
            check=True, capture_output=True, text=True).stdout
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)


class Peer(Server):
    nginx = PEER_NGINX

    def playlist_url(self, key):
        return f"http://127.0.0.1:{self.http_port}/hls/{key}.m3u8"

    def write_config(self):
        hls = os.path.join(self.prefix, "hls")
        os.makedirs(hls)
        os.chmod(hls, 0o1777)
        with open(PEER_TEMPLATE) as f:
            conf = f.read()
        values = {"RTMP_MODULE": PEER_MODULE, "WORKERS": str(self.workers),
                  "PREFIX": self.prefix, "RTMP_PORT": str(self.rtmp_port),
                  "HTTP_PORT": str(self.http_port)}
        for name, value in values.items():
            conf = conf.replace(f"@{name}@", value)
        if "@" in re.sub(r"#.*", "", conf):
            raise BenchError(f"unfilled placeholder in {PEER_TEMPLATE}")
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)


SERVERS = {"vid": Vid, "peer": Peer}


# ---------------------------------------------------------------------------------------
# Publishers and playlists


@contextmanager
def publishers(server, count, input_path):
    """count ffmpeg publishers s0..s{count-1}, looping the input in real time."""
    with ExitStack() as stack:
        procs = []
        for i in range(count):
            key = f"s{i}"
            argv = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error",
                    "-re", "-stream_loop", "-1", "-i", input_path,
                    "-c", "copy", "-f", "flv", server.publish_url(key)]
            log_path = os.path.join(server.prefix, "logs", f"ffmpeg-{key}.log")
            procs.append((key, log_path, stack.enter_context(process_group(argv, log_path))))
        yield procs


def check_publishers(procs):
    for key, log_path, proc in procs:
        if proc.poll() is not None:
            raise BenchError(f"publisher {key} exited with {proc.returncode}:\n"
                             f"{tail(log_path)}")


def fetch(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def wait_for_playlists(server, procs):
    """Waits until every stream's playlist lists at least one segment."""
    deadline = time.monotonic() + PLAYLIST_TIMEOUT
    pending = [key for key, _, _ in procs]
    while pending:
        check_publishers(procs)
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited:\n"
                             f"{tail(os.path.join(server.prefix, 'logs', 'error.log'))}")
        if time.monotonic() > deadline:
            raise BenchError(
                f"{server.name}: no playlist with a segment after {PLAYLIST_TIMEOUT:.0f} s "
                f"for {', '.join(pending)} ({server.playlist_url(pending[0])}):\n"
                f"{tail(os.path.join(server.prefix, 'logs', 'error.log'))}")
        for key in list(pending):
            try:
                if b"#EXTINF:" in fetch(server.playlist_url(key)):
                    pending.remove(key)
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------
# The measurements


@dataclass
class LoadResult:
    cpu_per_stream_minute: float  # CPU seconds per stream-minute
    max_worker_rss_mib: float  # VmRSS of the worker with the most
    private_of_max_rss_mib: float  # ... less shared memory (VmRSS - RssShmem)
    anon_of_max_rss_mib: float  # ... its private heap only (RssAnon)
    own_of_max_rss_mib: float  # ... written by it alone (Private_Dirty)


def measure_load(server, count, seconds, input_path, workdir):
    with server.running(workdir), publishers(server, count, input_path) as procs:
        wait_for_playlists(server, procs)
        pids = server.pids()
        start_cpu, start = cpu_times(pids), time.monotonic()
        max_rss = (0, 0, 0, 0)
        while True:
            max_rss = max([max_rss] + [memory_kib(p) for p in server.worker_pids()])
            left = seconds - (time.monotonic() - start)
            if left <= 0:
                break
            time.sleep(min(RSS_SAMPLE_INTERVAL, left))
        end_cpu, elapsed = cpu_times(pids), time.monotonic() - start
        # Every publisher must have lasted the whole window, or the figure means nothing.
        check_publishers(procs)
        if set(end_cpu) != set(start_cpu):
            raise BenchError(f"{server.name}: a server process exited during the window")
    cpu = sum(end_cpu[p] - start_cpu[p] for p in end_cpu)
    rss, shmem, anon, own = max_rss
    return LoadResult(cpu / (count * elapsed / 60.0), rss / 1024.0, (rss - shmem) / 1024.0, anon / 1024.0,
                      own / 1024.0)


@dataclass
class WrkResult:
    requests_per_second: float
    playlist_bytes: int
    errors: int


def measure_playlists(servers, input_path, workdir, args):
    """wrk against each server's s0 playlist, all servers live at once, runs interleaved.

    Both servers carry one publisher for the whole phase, so each wrk run sees the same
    background load; the runs start once the playlists hold a full window (--warmup).
    """
    results = {server.name: [] for server in servers}
    with ExitStack() as stack:
        all_procs = []
        for server in servers:
            stack.enter_context(server.running(workdir))
            all_procs.append(stack.enter_context(publishers(server, 1, input_path)))
        for server, procs in zip(servers, all_procs):
            wait_for_playlists(server, procs)
        time.sleep(args.warmup)
        for r in range(args.repeat):
            for server, procs in zip(servers, all_procs):
                got = run_wrk(server.playlist_url("s0"), args.wrk_seconds)
                check_publishers(procs)
                results[server.name].append(got)
                log(f"{server.name:4} wrk   run {r + 1}/{args.repeat}: "
                    f"{got.requests_per_second:.0f} req/s, playlist {got.playlist_bytes} B"
                    + (f", {got.errors} errors" if got.errors else ""))
    return results


def run_wrk(url, duration):
    size = len(fetch(url))
    out = subprocess.run([WRK, "-t2", "-c64", f"-d{duration}s", url],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not match:
        raise BenchError(f"cannot read wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(float(match.group(1)), size, errors)


# ---------------------------------------------------------------------------------------
# Input, environment, report


def make_input(cache_dir):
    path = os.path.join(cache_dir, INPUT_NAME)
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    log(f"making the input once: {path} (60 s, 720p30, ~3 Mbit/s)")
    tmp = path + ".tmp.mp4"
    try:
        subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                        *INPUT_ARGS, tmp], check=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def describe_input(path):
    try:
        out = subprocess.run(
            [FFPROBE, "-v", "error", "-show_entries", "format=duration,bit_rate",
             "-of", "default=nw=1", path], check=True, capture_output=True, text=True).stdout
        info = dict(line.split("=", 1) for line in out.split())
        return (f"{os.path.relpath(path, ROOT)}: {float(info['duration']):.0f} s, "
                f"{int(info['bit_rate']) / 1e6:.2f} Mbit/s total")
    except (OSError, subprocess.CalledProcessError, KeyError, ValueError):
        return os.path.relpath(path, ROOT)


def first_line(argv):
    try:
        res = subprocess.run(argv, capture_output=True, text=True)
        line = (res.stdout + res.stderr).strip().splitlines()[0]
        return re.sub(r" Copyright.*", "", line)
    except (OSError, IndexError):
        return "?"


def environment():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = first_line(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    return [
        f"host: {platform.node()}, {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}",
        f"vid:  {commit}, {first_line([VID_NGINX, '-v'])}",
        f"peer: {first_line([PEER_NGINX, '-v'])} + libnginx-mod-rtmp",
        f"tools: {first_line([FFMPEG, '-version'])}; {first_line([WRK, '-v'])}",
        f"1-min load average before the run: {os.getloadavg()[0]:.2f}"
        " (anything well above 0 means other work shared the CPUs)",
    ]


def check_tools(names):
    needed = [FFMPEG, FFPROBE, WRK]
    if "vid" in names:
        needed += [VID_NGINX, VID_MODULE, RENDER_CONF]
    if "peer" in names:
        needed += [PEER_NGINX, PEER_MODULE, PEER_TEMPLATE]
    missing = [p for p in needed if not os.path.exists(p)]
    if missing:
        raise BenchError("missing: " + ", ".join(missing) +
                         "\n  (run scripts/build.sh for vid, scripts/deps.sh bench for the rest)")


def median(values):
    return statistics.median(values) if values else None


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


@dataclass
class Results:
    names: list
    load: dict = field(default_factory=dict)  # (name, N) -> [LoadResult]
    wrk: dict = field(default_factory=dict)   # name -> [WrkResult]


def report(res, args, env_lines, input_line):
    names = res.names
    both = names == ["vid", "peer"]
    rows = []

    def add(label, results, attr, spec, target=""):
        """One table row: the median of attr over results[name] per server, the ratio."""
        values = {s: median([getattr(r, attr) for r in results.get(s, [])]) for s in names}
        row = [label] + [fmt(values[s], spec) for s in names]
        if both:
            row += [fmt(ratio(values["vid"], values["peer"]), ".2f"), target]
        rows.append(row)

    for n in args.publishers:
        load = {s: res.load.get((s, n), []) for s in names}
        label = f"{n} publisher{'s' if n > 1 else ''}"
        add(f"CPU s / stream-min, {label}", load, "cpu_per_stream_minute", ".4f", "<= 1.0")
        add(f"max worker RSS MiB, {label}", load, "max_worker_rss_mib", ".1f")
        add("  without shared memory MiB", load, "private_of_max_rss_mib", ".1f")
        add("  private heap (RssAnon) MiB", load, "anon_of_max_rss_mib", ".1f")
        add("  written by the worker alone MiB", load, "own_of_max_rss_mib", ".1f", "<= 1.0")
    add("playlist req/s, 1 publisher", res.wrk, "requests_per_second", ".0f", ">= 0.9")
    add("playlist size, bytes", res.wrk, "playlist_bytes", ".0f")

    header = ["metric (median)", *names, *(["vid/peer", "target"] if both else [])]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]

    def line(row):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    print()
    print(f"vid vs nginx-rtmp-module: {args.repeat} repeat(s), {args.seconds:g} s windows, "
          f"{args.workers} worker(s), playlist load wrk -t2 -c64 -d{args.wrk_seconds}s")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    errors = {s: sum(r.errors for r in res.wrk.get(s, [])) for s in names}
    if any(errors.values()):
        print("wrk errors (non-2xx or socket): " +
              ", ".join(f"{s} {errors[s]}" for s in names) + "  <- req/s not comparable")
    print()
    print("vid:  fMP4 segments + LL-HLS parts, playlist rendered per request")
    print("peer: MPEG-TS segments, playlist served as a static file")
    print(f"input: {input_line}")
    for env_line in env_lines:
        print(env_line)
    print("command: " + shlex.join([sys.executable] + sys.argv))


# ---------------------------------------------------------------------------------------


# Run sizes: the full run and --quick. Options given on the command line win over both.
FULL = {"publishers": "1,4,16", "seconds": 20, "repeat": 3, "wrk_seconds": 10, "warmup": 24}
QUICK = {"publishers": "1", "seconds": 5, "repeat": 1, "wrk_seconds": 5, "warmup": 0}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--publishers",
                   help="publisher counts to measure, comma separated (default 1,4,16)")
    p.add_argument("--seconds", type=float, help="measuring window per run (default 20)")
    p.add_argument("--repeat", type=int, help="runs per figure (default 3)")
    p.add_argument("--workers", type=int, default=2,
                   help="worker_processes for both servers (default 2)")
    p.add_argument("--wrk-seconds", type=int, help="duration of each wrk run (default 10)")
    p.add_argument("--warmup", type=float,
                   help="seconds of publishing before the wrk runs, so that the "
                        "playlists hold a full 24 s window (default 24)")
    p.add_argument("--servers", default="vid,peer",
                   help="which servers to run (default vid,peer; ratios need both)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 publisher, 5 s windows, 1 repeat, 5 s of wrk, "
                        "no warm-up")
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "target"),
                   help="where the input file is made once (default target/)")
    p.add_argument("--keep", action="store_true",
                   help="keep the server prefixes (configs, logs) after the run")
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        args.publishers = [int(n) for n in args.publishers.split(",")]
    except ValueError:
        p.error("--publishers takes numbers, e.g. 1,4,16")
    chosen = args.servers.split(",")
    if any(s not in SERVERS for s in chosen):
        p.error("--servers takes vid, peer or both")
    args.servers = [s for s in SERVERS if s in chosen]
    if (min(args.publishers) < 1 or args.seconds <= 0 or args.repeat < 1
            or args.workers < 1 or args.wrk_seconds < 1 or args.warmup < 0):
        p.error("counts and durations must be positive")
    return args


def run(args):
    check_tools(args.servers)
    input_path = make_input(args.cache_dir)
    input_line = describe_input(input_path)
    env_lines = environment()
    res = Results(args.servers)
    workdir = tempfile.mkdtemp(prefix="vid-bench-")
    os.chmod(workdir, 0o755)  # nginx workers (nobody) write below it
    ok = False
    try:
        total = len(args.publishers) * args.repeat * len(args.servers)
        done = 0
        for n in args.publishers:
            for r in range(args.repeat):
                # Alternate the servers within each repeat, so drift hits both alike.
                for name in args.servers:
                    done += 1
                    log(f"[load {done}/{total}] {name}: {n} publishers for {args.seconds:g} s ...")
                    server = SERVERS[name](name, args.workers)
                    got = measure_load(server, n, args.seconds, input_path, workdir)
                    res.load.setdefault((name, n), []).append(got)
                    log(f"{name:4} N={n:<3} run {r + 1}/{args.repeat}: "
                        f"{got.cpu_per_stream_minute:.4f} CPU s/stream-min, "
                        f"worker RSS {got.max_worker_rss_mib:.1f} MiB "
                        f"({got.private_of_max_rss_mib:.1f} without shared memory, "
                        f"{got.anon_of_max_rss_mib:.1f} private heap, "
                        f"{got.own_of_max_rss_mib:.1f} written by it alone)")
        log(f"[wrk] playlist requests/s: {args.repeat} run(s) per server ...")
        res.wrk = measure_playlists([SERVERS[name](name, args.workers) for name in args.servers],
                                    input_path, workdir, args)
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"server prefixes and logs kept in {workdir}")
    report(res, args, env_lines, input_line)


def interrupted(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so every process group is stopped on the way out."""
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        run(args)
    except BenchError as e:
        log(f"bench: {e}")
        return 1
    except subprocess.CalledProcessError as e:
        log(f"bench: {shlex.join(map(str, e.cmd))} failed with {e.returncode}\n"
            f"{e.stderr or ''}")
        return 1
    except KeyboardInterrupt:
        log("bench: interrupted, servers and publishers stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
