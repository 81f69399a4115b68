#!/usr/bin/env python3
"""Glass-to-glass latency with real players: vid vs nginx-rtmp-module, same camera, same run.

    python3 scripts/bench_latency.py [--runs 5] [--seconds 40] [--preset default|ll]
                                     [--via direct,stock-edge,vid-edge] [--whip]

Figures, not assertions. What runs:

  camera  this script with --camera: raw 1280x720 grey frames at 30 fps in real time,
          each carrying its capture time (Date.now()-comparable ms) as a row of black and
          white blocks (guard bits, the 41-bit time stamp, CRC-8, guard bits)
  ffmpeg  the camera's frames + a sine (lavfi) → libx264 veryfast zerolatency, 1 s GOP,
          no B-frames, AAC → one encode sent over RTMP to both servers (tee muxer)
  vid     build/sbin/nginx + libvid.so, nginx-conf/vid.conf as scripts/render-conf.sh
          renders it (2 s segments, 200 ms parts; --preset ll: 1 s segments, 100 ms parts)
  peer    Debian nginx + libnginx-mod-rtmp, scripts/bench/peer.conf.in (MPEG-TS,
          hls_fragment 2s)
  whip    with --whip: the same encode (constrained baseline then, for WebRTC; Opus audio
          beside the AAC) is also published to vid over WHIP (ffmpeg's whip muxer, in the
          same tee), and "vid-whip" is played like "vid": WHIP vs RTMP ingest, same camera,
          same frames, same server, same run
  players headless Chromium (playwright-core, scripts/bench/latency_play.js): for vid the
          player page (nginx-conf/www as in this tree, i.e. app.js's hls.js settings,
          served by the vid under test), for the peer a bare page with hls.js's default
          config. Each frame presented is drawn into a canvas and its time stamp decoded:
          camera-to-screen = Date.now() - time stamp.

  edges   with --via (default: direct only): vid's stream is also played through a stock
          nginx edge (nginx-conf/edge.conf, nginx's cache lock) and/or a vid edge
          (nginx-conf/edge-vid.conf, `hls_live_edge`), each rendered by
          scripts/render-edge.sh for build/sbin/nginx and started as tests/test_edge.py
          starts them (its Edge class), --workers workers, in front of this vid alone.
          The player page comes from the origin in every case, with ?src= naming the
          playlist on the path under test (direct: the origin's own); same camera, same
          publish, same page. A lone player is the first viewer of every object on its
          edge; --path-viewers N keeps N LL-HLS clients (the very requests hls.js makes)
          on each path all along, so that the player also waits as other viewers do.

Each of --runs runs plays vid (on each --via path) and the peer for --seconds each (from
page open; the order alternates), after a random 0-2 s pause so that players join at any
phase of a segment.
Per run and as medians over runs: camera-to-screen (median of the run's frames),
PROGRAM-DATE-TIME lag (Date.now() - hls.playingDate; the peer's playlists have no PDT),
start-up (page open → first frame on screen), stalls (waiting / hls.js
bufferStalledError episodes after the first frame) and the vid/peer ratios; with edges,
edge − direct for each figure (difference of the medians, and the median of the per-run
differences, run i through the edge minus run i direct).

Traces (every hls.js event, request and frame sample per run, vid's access log with
$msec, and the edges' access logs) go to --out (default target/bench-latency/). For trying
settings: --vid-segment / --vid-part override the preset, --vid-config JSON plays vid on a
bare hls.js page with that config instead of the player page, --hls-debug keeps the page's
console (with "debug": true in --vid-config, hls.js's own log) in the traces.

Prerequisites: scripts/build.sh (vid, hls.js in nginx-conf/www/node_modules),
scripts/deps.sh bench (the peer), chromium + node (scripts/deps.sh test), playwright-core
(npm ci --prefix tests/browser), imageio-ffmpeg (modern ffmpeg; Debian's is used without).
"""

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import bench  # noqa: E402  (scripts/bench.py: servers, process groups, ports)

VIAS = ("direct", "stock-edge", "vid-edge")
EDGE_CONFS = {"stock-edge": "edge.conf", "vid-edge": "edge-vid.conf"}

PLAYER_JS = os.path.join(ROOT, "scripts", "bench", "latency_play.js")
WWW_SRC = os.path.join(ROOT, "nginx-conf", "www")
HLSJS_CANDIDATES = [os.path.join(WWW_SRC, "node_modules", "hls.js", "dist", "hls.min.js"),
                    os.path.join(ROOT, "build", "www", "vendor", "hls.min.js")]
PLAYWRIGHT = os.path.join(ROOT, "tests", "browser", "node_modules", "playwright-core")
CHROMIUM = os.environ.get("VID_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
KEY = "cam"
# --whip: the same encode, also published over WebRTC (WHIP) under this key.
WHIP_KEY = "camw"

# ---- the frame code (scripts/bench/latency_play.js reads it; keep both in step) --------
W, H, FPS = 1280, 720, 30
CODE_BLOCKS, CODE_BW, CODE_LEFT, CODE_H = 57, 22, 13, 72
CODE_START, CODE_END, TS_BITS = (1, 0, 1, 0), (0, 1, 0, 1), 41
BLACK, WHITE, GREY = 16, 235, 128

PRESETS = {
    # the shipped config (nginx-conf/vid.conf)
    "default": {"segment": "2s", "part": "200ms"},
    # the low-latency preset documented in README "Latency"
    "ll": {"segment": "1s", "part": "100ms"},
}


def crc8(data):
    c = 0
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def code_row(ts):
    """One luma row of the code strip for time stamp ts (ms)."""
    bits = list(CODE_START) + [(ts >> (TS_BITS - 1 - i)) & 1 for i in range(TS_BITS)]
    crc = crc8(ts.to_bytes(6, "big"))
    bits += [(crc >> (7 - i)) & 1 for i in range(8)] + list(CODE_END)
    assert len(bits) == CODE_BLOCKS
    row = bytearray([GREY]) * W
    for i, b in enumerate(bits):
        x = CODE_LEFT + i * CODE_BW
        row[x:x + CODE_BW] = bytes([WHITE if b else BLACK]) * CODE_BW
    return bytes(row)


def camera(seconds):
    """Writes grey 1280x720 frames to stdout at 30 fps in real time, each stamped with
    the wall-clock time (ms) at which it is handed to the encoder."""
    base = bytearray(W * H)
    for y in range(H):
        # a soft diagonal gradient with a grid: something for the encoder to keep
        row = bytes(((x + y) * 160 // (W + H) + 48) if (x % 160 and y % 120) else 200 for x in range(W))
        base[y * W:(y + 1) * W] = row
    box = bytes([WHITE]) * 160
    out = sys.stdout.buffer
    t0 = None
    n = 0
    try:
        while seconds <= 0 or n < seconds * FPS:
            if t0 is None and n == 1:
                # The clock starts once the encoder took the first frame: no burst of
                # frames queued while it was starting (they would carry old time stamps).
                t0 = time.monotonic() - 1 / FPS
            if t0 is not None:
                delay = t0 + n / FPS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            frame = bytearray(base)
            bx = 40 + (n * 6) % (W - 240)
            for y in range(320, 480):
                frame[y * W + bx:y * W + bx + 160] = box
            row = code_row(int(time.time() * 1000))
            for y in range(CODE_H):
                frame[y * W:(y + 1) * W] = row
            out.write(frame)
            n += 1
    except (BrokenPipeError, KeyboardInterrupt):
        pass


# ---- servers ------------------------------------------------------------------------------

LOG_FORMAT = ("    log_format bench_latency '$msec \"$request\" $status $body_bytes_sent "
              "kind=$hls_live_kind msn=$hls_live_msn part=$hls_live_part wait=$hls_live_wait "
              "rt=$request_time';\n    access_log logs/bench_latency.log bench_latency;\n")


class Vid(bench.Vid):
    """vid with a preset's segment and part, the page of this tree, an $msec access log."""

    preset = PRESETS["default"]
    hlsjs = None

    def write_config(self):
        self.whip_port = bench.free_ports(1)[0]
        env = dict(os.environ, HLS_SEGMENT=self.preset["segment"], HLS_PART=self.preset["part"],
                   HLS_WINDOW="12", HLS_TS="off", WHIP_UDP=f"127.0.0.1:{self.whip_port}")
        media = os.path.join(self.prefix, "media")
        os.makedirs(media)
        os.chmod(media, 0o1777)
        www = os.path.join(self.prefix, "www")
        os.makedirs(os.path.join(www, "vendor"))
        for f in os.listdir(WWW_SRC):
            if f.endswith((".html", ".js", ".css")):
                shutil.copy(os.path.join(WWW_SRC, f), www)
        shutil.copy(self.hlsjs, os.path.join(www, "vendor", "hls.min.js"))
        os.chmod(self.prefix, 0o755)
        conf = subprocess.run([bench.RENDER_CONF, self.prefix, str(self.rtmp_port), str(self.http_port),
                               str(self.workers)], check=True, capture_output=True, text=True, env=env).stdout
        build_www = os.path.join(ROOT, "build", "www")
        if build_www not in conf:
            raise bench.BenchError("rendered config has no page root to replace")
        conf = conf.replace(build_www, www)
        conf = conf.replace("\nhttp {\n", "\nhttp {\n" + LOG_FORMAT, 1)
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)


class Peer(bench.Peer):
    pass


def seconds_of(duration):
    """nginx time ("2s", "1500ms") in whole seconds, rounded up, at least 1."""
    ms = int(duration[:-2]) if duration.endswith("ms") else int(float(duration.rstrip("s")) * 1000)
    return max(1, -(-ms // 1000))


def start_edge(stack, via, origin, workers, td):
    """A stock or vid edge in front of ORIGIN alone, as tests/test_edge.py starts them
    (its Edge: scripts/render-edge.sh for build/sbin/nginx); stopped and removed by STACK."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_edge import Edge  # noqa: E402  (imports pytest via tests/conftest.py)

    edge = Edge([origin], name=via, workers=workers, conf=EDGE_CONFS[via], td=td)
    stack.callback(shutil.rmtree, edge.prefix, ignore_errors=True)
    try:
        edge.start()
    except AssertionError as e:
        raise bench.BenchError(f"{via} did not start: {e}") from None
    stack.callback(edge.stop)
    return edge


async def ll_viewer(port, until, stats):
    """One LL-HLS client of vid's stream on PORT until UNTIL (monotonic): bench_edge.py's
    viewer (a blocking playlist reload for the preload-hinted part and a GET of that part,
    together, on keep-alive connections), with hls.js's _HLS_skip=YES on the reloads, so
    that it asks for the very URLs the player asks for."""
    import asyncio
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_cdn import HINT, Conn  # noqa: E402

    pl, pt = Conn(port, stats), Conn(port, stats)
    base = f"/live/{KEY}/"
    while time.monotonic() < until:
        try:
            status, _, body = await pl.get(base + "index.m3u8")
            m = HINT.search(body.decode()) if status == 200 else None
            while m and time.monotonic() < until:
                msn, part = m.groups()
                (s1, _, b1), (s2, _, _) = await asyncio.gather(
                    pl.get(f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES"),
                    pt.get(f"{base}{msn}.{part}.m4s"))
                m = HINT.search(b1.decode()) if s1 == 200 and s2 == 200 else None
        except Exception:  # noqa: BLE001 - start over, as a player would
            pl.close()
            pt.close()
        await asyncio.sleep(0.2)


def background_viewers(ports, n, seconds):
    """N LL-HLS clients on each of PORTS for SECONDS (a process of its own)."""
    import asyncio
    until = time.monotonic() + seconds
    stats = {"requests": 0, "bytes": 0, "retries": 0, "errors": []}

    async def main():
        await asyncio.gather(*(ll_viewer(port, until, stats) for port in ports for _ in range(n)))

    asyncio.run(main())


class Target:
    """What one player run plays: vid's stream on one --via path (VIA None: direct, as
    without --via), or the peer's."""

    def __init__(self, name, server, via=None, edge=None, key=KEY):
        self.name, self.server, self.via, self.edge, self.key = name, server, via, edge, key

    def playlist_url(self):
        if self.edge is not None:
            return self.edge.url(f"/live/{self.key}/index.m3u8")
        return self.server.playlist_url(self.key)


def get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return getattr(e, "code", None), ""


def wait_playlist(url, segments, what, encoder, timeout=40):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if encoder.poll() is not None:
            raise bench.BenchError(f"the encoder exited ({encoder.returncode})")
        status, text = get(url)
        if status == 200 and sum(1 for l in text.splitlines() if l.startswith("#EXTINF")) >= segments:
            return
        time.sleep(0.3)
    raise bench.BenchError(f"no playlist with {segments} segments from {what} after {timeout} s: {url}")


# ---- players ------------------------------------------------------------------------------

def play(args, target, hlsjs, seconds, delay_ms):
    server = target.server
    if server.name == "vid" and args.vid_config is None:
        url = f"http://127.0.0.1:{server.http_port}/?key={target.key}"
        if target.via is not None:
            # The page from the origin, the playlist (and so every part) from the path.
            url += "&src=" + urllib.parse.quote(target.playlist_url(), safe="")
        extra = []
    else:
        # A bare hls.js page on the playlist's own origin (answered by the player script).
        path = "/live/__bench/page.html" if server.name == "vid" else "/hls/__bench/page.html"
        port = target.edge.http_port if target.edge is not None else server.http_port
        url = f"http://127.0.0.1:{port}{path}"
        cfg = args.vid_config if server.name == "vid" else "{}"
        extra = ["--bench-page", target.playlist_url(), "--hlsjs", hlsjs, "--hls-config", cfg]
    if args.hls_debug:
        extra.append("--log-console")
    cmd = ["node", PLAYER_JS, "--url", url, "--seconds", str(seconds), "--delay-ms", str(delay_ms),
           "--chromium", CHROMIUM, *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + delay_ms / 1000 + 90)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise bench.BenchError(f"player printed nothing (exit {r.returncode}): {r.stderr[-1500:]}")
    return json.loads(lines[-1])


def median(v):
    return statistics.median(v) if v else None


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else None


def summarize(out):
    """The figures of one player run."""
    res = out.get("result") or {}
    samples = res.get("samples") or []
    lat = [s["lat"] / 1000 for s in samples]
    pdt = [s["pdt"] / 1000 for s in samples if s.get("pdt") is not None]
    first = res.get("firstFrame")
    stalls = res.get("stalls") or []
    stalled = sum((s["end"] - s["t"]) / 1000 for s in stalls if s.get("end"))
    holes = [e for e in res.get("events", []) if e.get("kind") == "error"
             and e.get("details") in ("bufferSeekOverHole", "bufferNudgeOnStall")]
    return {
        "lat": median(lat), "lat_p90": pct(lat, 90), "lat_min": min(lat) if lat else None,
        "pdt": median(pdt),
        "startup": (first - out["opened"]) / 1000 if first and out.get("opened") else None,
        "stalls": len(stalls), "stalled_s": stalled,
        "early_stalls": sum(1 for s in stalls if first and s["t"] - first <= 3000),
        "holes": len(holes), "frames": res.get("frames", 0), "bad": res.get("bad", 0), "samples": len(samples),
        "error": out.get("error"), "page_errors": out.get("pageErrors") or [],
    }


def fmt(v, spec=".2f", unit=""):
    return "–" if v is None else f"{v:{spec}}{unit}"


def first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


# ---- the run ----------------------------------------------------------------------------

def encoder_cmd(ffmpeg, urls, whip_url=None):
    """One encode to every RTMP URL (and with WHIP_URL, over WHIP too: constrained baseline
    video for WebRTC, Opus audio as the second audio stream)."""
    if whip_url is None:
        tee = "|".join(f"[f=flv:onfail=ignore]{u}" for u in urls)
        audio = ["-map", "1:a", "-c:a", "aac", "-b:a", "128k"]
        profile = []
    else:
        tee = "|".join([f"[f=flv:select=\\'v:0,a:0\\':onfail=ignore]{u}" for u in urls]
                       + [f"[f=whip:select=\\'v:0,a:1\\':onfail=ignore]{whip_url}"])
        audio = ["-map", "1:a", "-map", "1:a", "-c:a:0", "aac", "-b:a:0", "128k",
                 "-c:a:1", "libopus", "-b:a:1", "128k", "-ac:a:1", "2"]  # WebRTC Opus is stereo
        profile = ["-profile:v", "baseline"]
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
            "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}", "-framerate", str(FPS), "-i", "-",
            "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-map", "0:v", *audio,
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", str(FPS), "-bf", "0",
            *profile, "-sc_threshold", "0", "-pix_fmt", "yuv420p",
            "-flags", "+global_header", "-f", "tee", tee]


def find_ffmpeg():
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - Debian's ffmpeg does as well
        return bench.FFMPEG


def check_tools(args):
    missing = [p for p in (bench.VID_NGINX, bench.VID_MODULE, PLAYER_JS, CHROMIUM, PLAYWRIGHT)
               if not os.path.exists(p)]
    if "peer" in args.servers:
        missing += [p for p in (bench.PEER_NGINX, bench.PEER_MODULE) if not os.path.exists(p)]
    if not shutil.which("node"):
        missing.append("node")
    if missing:
        raise bench.BenchError("missing: " + ", ".join(missing))


def run(args):
    check_tools(args)
    hlsjs = next((p for p in HLSJS_CANDIDATES if os.path.exists(p)), None)
    if not hlsjs:
        raise bench.BenchError("hls.js not found: run scripts/build.sh (npm ci in nginx-conf/www)")
    ffmpeg = find_ffmpeg()
    Vid.preset = dict(PRESETS[args.preset])
    if args.vid_segment:
        Vid.preset["segment"] = args.vid_segment
    if args.vid_part:
        Vid.preset["part"] = args.vid_part
    Vid.hlsjs = hlsjs
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(hlsjs)), "package.json")) as f:
            hls_version = json.load(f).get("version", "?")
    except (OSError, ValueError):
        hls_version = "?"  # build/www/vendor has no package.json
    print(f"vid preset {args.preset}: hls_live_segment {Vid.preset['segment']}; hls_live_part {Vid.preset['part']}; "
          f"player page {'nginx-conf/www/app.js' if args.vid_config is None else 'bare hls.js ' + args.vid_config}")
    if "peer" in args.servers:
        print("peer: nginx-rtmp-module, hls_fragment 2s (scripts/bench/peer.conf.in), hls.js default config")
    if args.via != ["direct"]:
        print(f"vid via {', '.join(args.via)}: edges rendered by scripts/render-edge.sh "
              f"(stock-edge: nginx-conf/edge.conf, vid-edge: nginx-conf/edge-vid.conf), {args.workers} workers, "
              f"EDGE_TD {seconds_of(Vid.preset['segment'])}; the page from the origin, ?src= the path's playlist")
    print(f"hls.js {hls_version}; {first_line([CHROMIUM, '--version'])}; {first_line([ffmpeg, '-version'])}; "
          f"{os.cpu_count()} CPUs")
    sys.stdout.flush()

    workdir = tempfile.mkdtemp(prefix="vid-bench-latency-")
    os.chmod(workdir, 0o755)  # workers run as nobody when started as root
    stack = ExitStack()
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    with stack:
        servers = {}
        for name in args.servers:
            srv = (Vid if name == "vid" else Peer)(name=name, workers=args.workers)
            servers[name] = stack.enter_context(srv.running(workdir))
        targets = []
        for name in args.servers:
            if name == "peer":
                targets.append(Target("peer", servers["peer"]))
            elif args.via == ["direct"]:
                targets.append(Target("vid", servers["vid"]))
                if args.whip:
                    targets.append(Target("vid-whip", servers["vid"], key=WHIP_KEY))
            else:
                for via in args.via:
                    edge = None if via == "direct" else start_edge(
                        stack, via, servers["vid"], args.workers, seconds_of(Vid.preset["segment"]))
                    targets.append(Target(via, servers["vid"], via, edge))
        results = {t.name: [] for t in targets}
        urls = [servers[n].publish_url(KEY) for n in args.servers]
        total = args.runs * len(targets) * (args.seconds + 15) + 120
        cam_cmd = [sys.executable, os.path.abspath(__file__), "--camera", str(int(total))]
        whip_url = f"http://127.0.0.1:{servers['vid'].http_port}/whip/{WHIP_KEY}" if args.whip else None
        enc = encoder_cmd(ffmpeg, urls, whip_url)
        print("$ " + shlex.join(cam_cmd) + " | " + shlex.join(enc))
        sys.stdout.flush()
        cam = subprocess.Popen(cam_cmd, stdout=subprocess.PIPE, start_new_session=True)
        enc_log = open(os.path.join(workdir, "encoder.log"), "wb")
        encoder = subprocess.Popen(enc, stdin=cam.stdout, stdout=enc_log, stderr=enc_log, start_new_session=True)
        cam.stdout.close()
        stack.callback(bench.stop_group, cam)
        stack.callback(bench.stop_group, encoder)
        for t in targets:
            wait_playlist(t.playlist_url(), 3, t.name, encoder)
        if args.path_viewers:
            import multiprocessing
            ports = [t.edge.http_port if t.edge is not None else t.server.http_port
                     for t in targets if t.server.name == "vid"]
            viewers = multiprocessing.Process(target=background_viewers, args=(ports, args.path_viewers, total),
                                              daemon=True)
            viewers.start()

            def stop_viewers():
                viewers.terminate()
                viewers.join(5)

            stack.callback(stop_viewers)
            print(f"{args.path_viewers} LL-HLS clients on each path of vid's stream, all along")
        time.sleep(args.warmup)

        print()
        print(f"{'run':>3} {'server':10} {'cam→screen':>10} {'p90':>6} {'PDT lag':>8} {'start-up':>8} "
              f"{'stalls':>6} {'stalled':>8} {'holes':>5} {'frames':>6} {'bad':>4}")
        for i in range(args.runs):
            order = list(targets) if i % 2 == 0 else list(reversed(targets))
            for target in order:
                name = target.name
                delay_ms = int(rng.uniform(0, 2000))
                out = play(args, target, hlsjs, args.seconds, delay_ms)
                if encoder.poll() is not None:
                    raise bench.BenchError(f"the encoder exited: {bench.tail(enc_log.name)}")
                s = summarize(out)
                s["delay_ms"] = delay_ms
                results[name].append(s)
                with open(os.path.join(args.out, f"run{i + 1}-{name}.json"), "w") as f:
                    json.dump({"summary": s, **out}, f)
                note = f"  ERROR {s['error'][:200]}" if s["error"] else ""
                print(f"{i + 1:>3} {name:10} {fmt(s['lat'], '.3f', ' s'):>10} {fmt(s['lat_p90'], '.2f'):>6} "
                      f"{fmt(s['pdt'], '.3f', ' s'):>8} {fmt(s['startup'], '.2f', ' s'):>8} {s['stalls']:>6} "
                      f"{fmt(s['stalled_s'], '.1f', ' s'):>8} {s['holes']:>5} {s['frames']:>6} {s['bad']:>4}{note}")
                sys.stdout.flush()
        if "vid" in servers:
            src = os.path.join(servers["vid"].prefix, "logs", "bench_latency.log")
            if os.path.exists(src):
                shutil.copy(src, os.path.join(args.out, "vid-access.log"))
        for t in targets:
            src = t.edge and os.path.join(t.edge.prefix, "logs", "edge.access.log")
            if src and os.path.exists(src):
                shutil.copy(src, os.path.join(args.out, f"{t.name}-access.log"))
    report(results, args)


def report(results, args):
    print()
    cols = [("camera-to-screen", "lat", "s"), ("camera-to-screen p90", "lat_p90", "s"), ("PDT lag", "pdt", "s"),
            ("start-up", "startup", "s"), ("stalls per run", "stalls", ""), ("stalled seconds per run", "stalled_s", "s")]
    names = list(results)
    both = "vid" in names and "peer" in names
    edges = [n for n in names if n in EDGE_CONFS] if "direct" in names else []
    print(f"{'median over ' + str(args.runs) + ' runs':26}" + "".join(f"{n:>11}" for n in names)
          + (f"{'vid/peer':>10}" if both else ""))
    for label, key, unit in cols:
        meds = {n: median([r[key] for r in results[n] if r[key] is not None]) for n in names}
        row = f"{label:26}" + "".join(f"{fmt(meds[n], '.3f' if unit else '.1f', (' ' + unit) if unit else ''):>11}"
                                      for n in names)
        if both and key in ("lat", "lat_p90", "startup") and meds["vid"] and meds["peer"]:
            row += f"{meds['vid'] / meds['peer']:>10.2f}"
        print(row)
    for n in names:
        total = sum(r["stalls"] for r in results[n])
        early = sum(r["early_stalls"] for r in results[n])
        holes = sum(r["holes"] for r in results[n])
        bad = sum(r["bad"] for r in results[n])
        frames = sum(r["frames"] for r in results[n])
        print(f"{n}: {total} stalls in {args.runs} runs ({early} within 3 s of the first frame), "
              f"{holes} hls.js hole seeks/nudges, {bad} of {frames} frame reads rejected")
    if edges:
        print()
        print("edge − direct (difference of the medians; median of the per-run differences, run i through "
              "the edge minus run i direct)")
        for label, key, _ in cols[:4]:
            row = f"{label:26}"
            for n in edges:
                d = [e[key] - r[key] for e, r in zip(results[n], results["direct"])
                     if e[key] is not None and r[key] is not None]
                med_e = median([r[key] for r in results[n] if r[key] is not None])
                med_d = median([r[key] for r in results["direct"] if r[key] is not None])
                diff = med_e - med_d if med_e is not None and med_d is not None else None
                row += f"  {n}: {fmt(None if diff is None else diff * 1000, '+.0f', ' ms')}"
                row += f" ({fmt(None if not d else median(d) * 1000, '+.0f', ' ms')})"
            print(row)
    if "vid-whip" in names:
        print()
        print("WHIP − RTMP ingest (difference of the medians; median of the per-run differences)")
        for label, key, _ in cols[:4]:
            d = [w[key] - r[key] for w, r in zip(results["vid-whip"], results["vid"])
                 if w[key] is not None and r[key] is not None]
            med_w = median([r[key] for r in results["vid-whip"] if r[key] is not None])
            med_r = median([r[key] for r in results["vid"] if r[key] is not None])
            diff = med_w - med_r if med_w is not None and med_r is not None else None
            print(f"{label:26}  {fmt(None if diff is None else diff * 1000, '+.0f', ' ms')}"
                  f" ({fmt(None if not d else median(d) * 1000, '+.0f', ' ms')})")
    print(f"traces: {os.path.relpath(args.out, ROOT)}/")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="player runs per server (default 5)")
    p.add_argument("--seconds", type=float, default=40, help="seconds per player run, from page open (default 40)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="vid's segment/part settings: default (2s/200ms) or ll (1s/100ms)")
    p.add_argument("--vid-segment", help="override the preset's hls_live_segment (e.g. 2s)")
    p.add_argument("--vid-part", help="override the preset's hls_live_part (e.g. 100ms)")
    p.add_argument("--servers", default="vid,peer", help="vid, peer or both (default vid,peer)")
    p.add_argument("--workers", type=int, default=2, help="worker_processes of both servers and the edges (default 2)")
    p.add_argument("--via", default="direct",
                   help="the paths vid's stream is played on, comma-separated: direct (from the origin), "
                        "stock-edge (nginx-conf/edge.conf), vid-edge (nginx-conf/edge-vid.conf) (default direct)")
    p.add_argument("--path-viewers", type=int, default=0, metavar="N",
                   help="N LL-HLS clients (blocking reload + hinted part, as hls.js asks) on each path of vid's "
                        "stream during the whole run, so that the player is not an edge's only viewer (default 0)")
    p.add_argument("--whip", action="store_true",
                   help="also publish the same encode to vid over WHIP and play it (vid-whip)")
    p.add_argument("--warmup", type=float, default=4, help="seconds after the playlists are up (default 4)")
    p.add_argument("--seed", type=int, help="seed of the random start phases")
    p.add_argument("--vid-config", help="play vid on a bare hls.js page with this config (JSON) "
                                        "instead of the player page (for trying settings)")
    p.add_argument("--hls-debug", action="store_true",
                   help="keep every console line of the page in the traces (add \"debug\": true to --vid-config "
                        "for hls.js's own log)")
    p.add_argument("--out", default=os.path.join(ROOT, "target", "bench-latency"), help="trace folder")
    p.add_argument("--camera", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.camera is not None:
        return args
    chosen = args.servers.split(",")
    if not chosen or any(s not in ("vid", "peer") for s in chosen):
        p.error("--servers takes vid, peer or both")
    args.servers = [s for s in ("vid", "peer") if s in chosen]
    via = args.via.split(",")
    if not via or any(v not in VIAS for v in via):
        p.error("--via takes direct, stock-edge, vid-edge or several of them")
    args.via = [v for v in VIAS if v in via]
    if args.via != ["direct"] and "vid" not in args.servers:
        p.error("--via plays vid's stream: --servers must include vid")
    if args.whip and ("vid" not in args.servers or args.via != ["direct"]):
        p.error("--whip plays vid directly: --servers must include vid, --via direct")
    if args.runs < 1 or args.seconds < 5:
        p.error("--runs >= 1 and --seconds >= 5")
    if args.vid_config is not None:
        json.loads(args.vid_config)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.camera is not None:
        camera(args.camera)
        return 0
    print("$ " + shlex.join(["python3", os.path.relpath(__file__, os.getcwd()), *argv]))
    sys.stdout.flush()
    try:
        run(args)
    except bench.BenchError as e:
        print(f"bench_latency: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_latency: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
