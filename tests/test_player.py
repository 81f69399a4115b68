"""The player page in a real browser: hls.js (low-latency mode) in headless Chromium
plays a live stream from vid; the page's own measurements are checked.

Needs Chromium (/usr/bin/chromium, Debian package `chromium`) and node + npm
(playwright-core from tests/browser, installed here with `npm ci` when missing); skipped
with the reason printed when they are not there. The measured latency goes to
target/player-latency.json (and the screenshot next to it), so the numbers are there
without `pytest -s`.
"""

import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest

from conftest import ROOT, parse_playlist, publish, wait_for

BROWSER_DIR = ROOT / "tests" / "browser"
PLAY_JS = ROOT / "tests" / "tools" / "play.js"
WWW = ROOT / "build" / "www"
REPORT_DIR = ROOT / "target"
CHROMIUM = os.environ.get("VID_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

PLAY_SECONDS = 32  # how long the browser plays once it started
STARTUP_TIMEOUT = 60  # generous: a noisy 2-core machine can start Chromium slowly
LATENCY_LIMIT = 3.0  # seconds; the goal is <= 1.5 s (reported, not asserted)


# Stalls that begin within this long after playback started are reported, not failed:
# hls.js 1.7.4 sometimes starts on the segment in progress, loads its first parts and
# then skips the next one (a 1-2 s stall, then bufferSeekOverHole). Seen in 2 of 5 ABR
# runs on a loaded machine, and in 1 of 3 runs of test_player.py's hls.js test with the
# page and play.js as they were before ?src= existed. Every later stall fails the test.
START_GRACE_S = 2.0


def excused_stalls(stats):
    """Stalls that began within START_GRACE_S of the start (see there), and at most one
    later stall that hls.js ended by seeking over a hole it left itself: the same hls.js
    1.7.4 race at a segment's last part (a blocking reload completes segment N while part
    N.8 is loaded but not yet buffered, and N.9 is never requested; README, Latency). The
    server lists and serves every part; see scripts/bench_latency.py --hls-debug."""
    early = [e for e in stats["stallEvents"] if e["t"] - stats["started"] <= START_GRACE_S * 1000]
    holes = [x["t"] for x in stats.get("errors", []) if x.get("details") == "bufferSeekOverHole"]
    later = [e for e in stats["stallEvents"] if e not in early
             and any(e["t"] <= t <= e["t"] + 1000 * (e.get("seconds") or 0) + 1000 for t in holes)]
    return early + later[:1]


def _skip(reason):
    print(f"SKIP test_player: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """Checks the browser tooling once; installs playwright-core from the lock file."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        _skip("node/npm not found (scripts/deps.sh build installs them)")
    if not os.access(CHROMIUM, os.X_OK):
        _skip(f"{CHROMIUM} not found (scripts/deps.sh test installs Debian's chromium)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        r = subprocess.run([npm, "ci", "--prefix", str(BROWSER_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"npm ci --prefix tests/browser failed:\n{r.stdout}\n{r.stderr}"
    # The page is part of the build; hls.js is there whenever npm is (it is, see above).
    for f in ("index.html", "app.js", "style.css", "vendor/hls.min.js"):
        assert (WWW / f).exists(), f"build/www/{f} missing: run scripts/build.sh"
    return node


def run_play(node, url, *args, timeout, on_playing=None):
    """Runs play.js; on_playing() is called (in a thread) once the page plays."""
    proc = subprocess.Popen([node, str(PLAY_JS), "--url", url, "--chromium", CHROMIUM,
                             "--startup-timeout", str(STARTUP_TIMEOUT), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []

    def read_stderr():
        for line in proc.stderr:
            err.append(line)
            if line.strip() == "play.js: playing" and on_playing:
                threading.Thread(target=on_playing, daemon=True).start()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        stdout = proc.stdout.read()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        reader.join(5)
    stderr = "".join(err)
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    assert lines, f"play.js printed no report (exit {proc.returncode}):\n{stdout[-2000:]}\n{stderr[-2000:]}"
    # The whole report (samples, vidStats, every /live/ request) for a look after a failure.
    REPORT_DIR.mkdir(exist_ok=True)
    name = os.environ.get("PYTEST_CURRENT_TEST", "play").split("::")[-1].split(" ")[0]
    (REPORT_DIR / f"player-{name}.json").write_text(lines[-1] + "\n")
    return json.loads(lines[-1]), stderr


def wait_live(vid, key, segments=2, timeout=30):
    def ready():
        r = vid.get(f"/live/{key}/index.m3u8")
        return r.status == 200 and len(parse_playlist(r.text)["segments"]) >= segments

    wait_for(ready, timeout, step=0.2, what=f"{segments} segments of {key}")


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


# ---- a small PNG reader (stdlib only): enough for Chromium's screenshots ---------------

def read_png(path):
    """Returns (width, height, channels, rows) with rows as bytes of 8-bit samples."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, bytearray(), None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0 and ctype in (0, 2, 4, 6), ihdr
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(bytes(idat))
    stride = w * ch
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, ch, rows


def region_colours(png, box):
    """Distinct colours (quantised to 4 bits a channel) and the luma spread in box."""
    w, h, ch, rows = png
    x0, y0 = max(0, int(box["x"])), max(0, int(box["y"]))
    x1, y1 = min(w, int(box["x"] + box["width"])), min(h, int(box["y"] + box["height"]))
    colours, lumas = set(), []
    for y in range(y0, y1, 2):
        row = rows[y]
        for x in range(x0, x1, 2):
            px = row[x * ch:x * ch + 3] if ch >= 3 else row[x * ch:x * ch + 1] * 3
            colours.add((px[0] >> 4, px[1] >> 4, px[2] >> 4))
            lumas.append(0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2])
    return len(colours), statistics.pstdev(lumas) if lumas else 0.0


# ---- tests -------------------------------------------------------------------------------

def test_page_and_vendor_served(vid, browser):
    """The default config serves the page, its script and hls.js with sensible types."""
    for path, ctype in (("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css"),
                        ("/vendor/hls.min.js", "text/javascript")):
        r = vid.get(path)
        assert r.status == 200, (path, r.status, vid.log()[-2000:])
        assert r.headers["Content-Type"].startswith(ctype), (path, r.headers["Content-Type"])
    assert b'src="vendor/hls.min.js"' in vid.get("/").body
    assert vid.get("/streams.json").status == 200


def test_stream_list_shows_published_key(vid_factory, browser):
    vid = vid_factory()
    pub = publish(vid.rtmp_url("listed_key-1"), seconds=30, size="320x240")
    try:
        wait_for(lambda: "listed_key-1" in vid.get("/streams.json").text, 30, step=0.2, what="streams.json entry")
        out, _ = run_play(browser, vid.url("/"), "--list-key", "listed_key-1", timeout=STARTUP_TIMEOUT + 60)
        assert not out.get("error"), out
        rows = {cells[0]: cells for cells in out["list"]}
        assert "listed_key-1" in rows, out["list"]
        key, codecs, resolution, rate, uptime, status, viewers, _chart = rows["listed_key-1"]
        assert status == "live" and viewers.isdigit(), rows["listed_key-1"]
        assert codecs.startswith("avc1.") and "mp4a.40.2" in codecs, codecs
        assert resolution.startswith("320x240"), resolution
        assert rate.endswith("bit/s"), rate
        assert uptime.count(":") >= 1 and uptime != "ended", uptime
        assert out["listStatus"].startswith("1 live stream"), out["listStatus"]
        assert not out["pageErrors"], out["pageErrors"]
    finally:
        pub.kill()
        pub.wait()


def test_hlsjs_plays_live_with_low_latency(vid_factory, browser, tmp_path):
    # The shipped defaults (nginx-conf/vid.conf): 2 s segments, 200 ms parts, window 12.
    vid = vid_factory(segment="2s", part="200ms", window=12)
    pub = publish(vid.rtmp_url("demo"), seconds=45, rate=30, gop=30)
    t_start = time.monotonic()
    shot = tmp_path / "player.png"
    try:
        wait_live(vid, "demo")
        out, _ = run_play(browser, vid.url("/?key=demo"), "--seconds", str(PLAY_SECONDS), "--screenshot", str(shot),
                          timeout=STARTUP_TIMEOUT + PLAY_SECONDS + 90)
    finally:
        pub.kill()
        pub.wait()
    elapsed = time.monotonic() - t_start
    stats = out.get("stats") or {}
    context = json.dumps({k: out.get(k) for k in ("error", "startupSeconds", "pageErrors", "console")}
                         | {"errors": stats.get("errors"), "stallEvents": stats.get("stallEvents")})[:6000]
    assert not out.get("error"), context
    assert stats["engine"].startswith("hls.js"), stats["engine"]

    samples = out["samples"]
    assert samples and all(s["playing"] for s in samples[-3:]), ("not playing at the end", samples[-5:], context)
    advanced = stats["currentTime"] - samples[0]["currentTime"]
    assert advanced >= 25, (f"currentTime advanced only {advanced:.1f} s in {PLAY_SECONDS} s", context)

    # Strict once playback started (after the start-up grace, see START_GRACE_S): not one
    # stall, no fatal error, no page error.
    early = excused_stalls(stats)
    if early:
        print(f"note: {len(early)} excused stall(s) (start-up, or the hls.js hole at a segment end): {early}")
    assert stats["stalls"] == len(early), ("stalls after the start", stats["stallEvents"], context)
    assert stats["fatalErrors"] == 0 and not any(e["fatal"] for e in stats["errors"]), context
    assert not out["pageErrors"], out["pageErrors"]

    lat = [s["latency"] for s in stats["latency"] if s["latency"] is not None]
    wall = [s["wall"] for s in stats["latency"] if s.get("wall") is not None]
    assert len(lat) >= 50, f"only {len(lat)} latency samples"
    report = {
        "median_latency": round(statistics.median(lat), 3),
        "p90_latency": round(percentile(lat, 90), 3),
        "max_latency": round(max(lat), 3),
        # Wall clock: now - the program date time of the frame on screen.
        "median_wall_latency": round(statistics.median(wall), 3) if wall else None,
        "p90_wall_latency": round(percentile(wall, 90), 3) if wall else None,
        "samples": len(lat),
        "startup_seconds": out["startupSeconds"],
        "played_seconds": round(advanced, 2),
        "stalls": stats["stalls"],
        "seeks": stats["seeks"],
        "non_fatal_errors": sorted({e["details"] for e in stats["errors"]}),
        "engine": stats["engine"],
        "browser": out["browser"],
        "test_seconds": round(elapsed, 1),
        "stream": {"segment": "2s", "part": "200ms", "gop": 30, "fps": 30, "size": "640x360"},
    }
    REPORT_DIR.mkdir(exist_ok=True)
    (REPORT_DIR / "player-latency.json").write_text(json.dumps(report, indent=2) + "\n")
    if shot.exists():
        shutil.copyfile(shot, REPORT_DIR / "player-screenshot.png")
    print(f"player latency: median {report['median_latency']} s, p90 {report['p90_latency']} s "
          f"(wall clock median {report['median_wall_latency']} s, p90 {report['p90_wall_latency']} s), "
          f"startup {report['startup_seconds']} s -> target/player-latency.json")
    assert report["median_latency"] < LATENCY_LIMIT, report

    # The screenshot shows video: testsrc2 is colourful, a black or frozen-blank box is not.
    assert out["videoBox"] and shot.exists(), out.get("videoBox")
    colours, spread = region_colours(read_png(shot), out["videoBox"])
    assert colours >= 40 and spread >= 20, f"video area looks blank: {colours} colours, luma spread {spread:.1f}"


@pytest.mark.xfail(strict=False, reason="seen once in CI: Chromium's native HLS player got a 404 and "
                   "DEMUXER_ERROR_COULD_NOT_PARSE on its first fetches; not yet reproduced (hls.js tests are strict)")
def test_native_hls_in_chromium_plays(vid_factory, browser, tmp_path):
    """Without hls.js the page falls back to the browser's own HLS: Chromium has one, an
    independent reader of our playlists and fMP4. It has no getStartDate(), so the
    latency is not measured here; playback itself is held to the same standard."""
    vid = vid_factory(segment="1s", part="200ms", window=6)
    pub = publish(vid.rtmp_url("native"), seconds=35, rate=30, gop=30)
    shot = tmp_path / "native.png"
    try:
        wait_live(vid, "native")
        out, _ = run_play(browser, vid.url("/?key=native"), "--no-hlsjs", "--seconds", "15", "--screenshot", str(shot),
                          timeout=STARTUP_TIMEOUT + 15 + 90)
    finally:
        pub.kill()
        pub.wait()
    stats = out.get("stats") or {}
    if out.get("error") and stats.get("engine") is None:
        _skip("this Chromium has no native HLS playback")
    context = json.dumps({k: out.get(k) for k in ("error", "startupSeconds", "pageErrors", "console")}
                         | {"errors": stats.get("errors"), "stallEvents": stats.get("stallEvents")})[:6000]
    assert not out.get("error"), context
    assert stats["engine"] == "native", stats["engine"]
    samples = out["samples"]
    assert all(s["playing"] for s in samples[-3:]), (samples[-5:], context)
    advanced = stats["currentTime"] - samples[0]["currentTime"]
    assert advanced >= 12, (f"currentTime advanced only {advanced:.1f} s in 15 s", context)
    assert stats["stalls"] == 0, ("stalls after the start", stats["stallEvents"], context)
    assert stats["fatalErrors"] == 0, context
    colours, spread = region_colours(read_png(shot), out["videoBox"])
    assert colours >= 40 and spread >= 20, f"video area looks blank: {colours} colours, luma spread {spread:.1f}"


def test_publisher_pause_is_a_stall_and_playback_recovers(vid_factory, browser):
    """The stall counter the tests above rely on does count real stalls: the publisher
    stops sending for 4 s mid-play (SIGSTOP), the player runs dry, then recovers."""
    vid = vid_factory(segment="1s", part="200ms", window=6)
    pub = publish(vid.rtmp_url("pause"), seconds=40, rate=30, gop=30)
    resumed = threading.Event()
    try:
        wait_live(vid, "pause")

        def pause_once():
            time.sleep(4)  # some steady playback first
            pub.send_signal(signal.SIGSTOP)
            time.sleep(4)
            pub.send_signal(signal.SIGCONT)
            resumed.set()

        out, _ = run_play(browser, vid.url("/?key=pause"), "--seconds", "18", timeout=STARTUP_TIMEOUT + 18 + 90,
                          on_playing=pause_once)
    finally:
        pub.send_signal(signal.SIGCONT)
        pub.kill()
        pub.wait()
    stats = out.get("stats") or {}
    assert not out.get("error"), out
    assert resumed.is_set(), "the pause did not happen while the page played"
    assert stats["stalls"] >= 1, ("a 4 s publisher pause went unnoticed", out["samples"])
    assert stats["stalledSeconds"] >= 1, stats["stallEvents"]
    assert stats["fatalErrors"] == 0, stats["errors"]
    # Playing again afterwards, and the playhead moving.
    assert all(s["playing"] for s in out["samples"][-3:]), out["samples"][-5:]
    assert out["samples"][-1]["currentTime"] - out["samples"][-4]["currentTime"] >= 2, out["samples"][-5:]
