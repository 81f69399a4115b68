"""The player page in headless Chromium beyond one H.264 stream: ABR switching in an
hls_live_variants group, HEVC (when this Chromium's MediaSource takes it), and playback
through a CDN edge (nginx-conf/edge.conf) from a page served by the origin.

The page plays any playlist with `?src=URL`; `window.vidControl.capLevel(n)` steers
hls.js's ABR (tests/tools/play.js --at SECONDS:EXPR runs it during playback). Same
tooling and skips as tests/test_player.py; every play.js report is kept in
target/player-<test>.json, the figures in target/browser-abr.json.
"""

import json
import re
import statistics
import urllib.parse

import pytest

from conftest import ROOT, modern_ffmpeg, publish
from test_cdn import edge_factory, edge_playlist  # noqa: F401 (a fixture)
from test_player import (STARTUP_TIMEOUT, browser, excused_stalls, percentile,  # noqa: F401 (a fixture)
                         run_play, wait_live)

REPORT = ROOT / "target" / "browser-abr.json"
HEVC_PROBE = 'video/mp4; codecs="hvc1.1.6.L93.B0"'


def report(name, figures):
    """Adds FIGURES under NAME to target/browser-abr.json (one file for the module)."""
    REPORT.parent.mkdir(exist_ok=True)
    data = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    data[name] = figures
    REPORT.write_text(json.dumps(data, indent=2) + "\n")


def context_of(out):
    stats = out.get("stats") or {}
    return json.dumps({k: out.get(k) for k in ("error", "startupSeconds", "pageErrors", "console", "actions")}
                      | {k: stats.get(k) for k in ("errors", "stallEvents", "levelSwitches", "videoSizes", "controls")})[:8000]


def check_clean_playback(out, seconds, min_fraction=0.75):
    """What every test here asks of playback once it started: hls.js, no stall (after
    test_player.START_GRACE_S, or the known hls.js hole: excused_stalls), no fatal error, no
    page error, playing at the end, the playhead
    advanced with the clock."""
    stats = out.get("stats") or {}
    ctx = context_of(out)
    assert not out.get("error"), ctx
    assert stats["engine"].startswith("hls.js"), stats["engine"]
    samples = out["samples"]
    assert samples and all(s["playing"] for s in samples[-2:]), ("not playing at the end", samples[-5:], ctx)
    advanced = stats["currentTime"] - samples[0]["currentTime"]
    assert advanced >= min_fraction * seconds, (f"currentTime advanced only {advanced:.1f} s in {seconds} s", ctx)
    early = excused_stalls(stats)
    if early:
        print(f"note: {len(early)} excused stall(s) (start-up, or the hls.js hole at a segment end): {early}")
    assert stats["stalls"] == len(early), ("stalls after the start", stats["stallEvents"], ctx)
    assert stats["fatalErrors"] == 0 and not any(e["fatal"] for e in stats["errors"]), ctx
    assert not out["pageErrors"], out["pageErrors"]
    return stats, advanced


# ---- src= --------------------------------------------------------------------------------

@pytest.mark.parametrize("src", ["javascript:alert(1)//.m3u8", "ftp://127.0.0.1/live/x/index.m3u8",
                                 "/live/x/index.m3u8.txt", "http://user:pw@127.0.0.1/live/x/index.m3u8"],
                         ids=["javascript", "ftp", "not-m3u8", "credentials"])  # ids name the report files
def test_src_is_validated(vid, browser, src):
    """?src= takes http(s) playlist URLs only: anything else is refused with an error on
    the page, and nothing is requested."""
    out, _ = run_play(browser, vid.url("/?src=" + urllib.parse.quote(src, safe="")), "--load-only", "1",
                      timeout=STARTUP_TIMEOUT + 30)
    assert not out.get("error"), out
    stats = out["stats"]
    assert stats["src"] is None and stats["engine"] is None, stats
    assert [(e["type"], e["fatal"]) for e in stats["errors"]] == [("src", True)], stats["errors"]
    assert "src= must be" in out["errorText"] and not out["playerHidden"], out["errorText"]
    assert not out["requests"] and not out["pageErrors"], (out["requests"], out["pageErrors"])


# ---- ABR ----------------------------------------------------------------------------------

ABR_SECONDS = 28  # played; the cap goes on at CAP_AT and comes off at UNCAP_AT
CAP_AT, UNCAP_AT = 8, 17


def test_abr_switches_down_under_a_cap_and_back_up(vid_factory, browser):
    vid = vid_factory(segment="1s", part="200ms", window=6, workers=2, live_extra="hls_live_variants _hi _lo;")
    run = STARTUP_TIMEOUT + ABR_SECONDS + 30
    hi = publish(vid.rtmp_url("show_hi"), seconds=run, size="640x360", rate=30, gop=30)
    lo = publish(vid.rtmp_url("show_lo"), seconds=run, size="320x240", rate=30, gop=30)
    try:
        wait_live(vid, "show_hi")
        wait_live(vid, "show_lo")
        out, _ = run_play(browser, vid.url("/?src=" + urllib.parse.quote("/live/show/master.m3u8", safe="")),
                          "--seconds", str(ABR_SECONDS),
                          "--at", f"{CAP_AT}:window.vidControl.capLevel(0)",
                          "--at", f"{UNCAP_AT}:window.vidControl.capLevel(-1)",
                          timeout=STARTUP_TIMEOUT + ABR_SECONDS + 90)
    finally:
        for p in (hi, lo):
            p.kill()
            p.wait()
    stats, advanced = check_clean_playback(out, ABR_SECONDS)
    ctx = context_of(out)
    assert stats["src"] == vid.url("/live/show/master.m3u8"), stats["src"]
    assert stats["key"] == "show", stats["key"]
    # hls.js orders the variants by bit rate: 0 is 320x240, 1 is 640x360.
    assert [(l["width"], l["height"]) for l in stats["levels"]] == [(320, 240), (640, 360)], stats["levels"]

    actions = out["actions"]
    assert [a["at"] for a in actions] == [CAP_AT, UNCAP_AT] and all(a["result"] is True for a in actions), actions
    t_cap, t_uncap = actions[0]["t"], actions[1]["t"]
    switches = stats["levelSwitches"]
    sizes = stats["videoSizes"]

    def level_at(t):
        """The level playing at wall time t (the last switch before it), or None."""
        before = [s for s in switches if s["t"] <= t]
        return before[-1]["level"] if before else None

    before_cap = level_at(t_cap)
    down = next((s for s in switches if t_cap <= s["t"] < t_uncap and s["level"] == 0), None)
    up = next((s for s in switches if s["t"] >= t_uncap and s["level"] == 1), None)
    figures = {
        "level_before_cap": before_cap,
        "down_after_cap_s": round((down["t"] - t_cap) / 1000, 2) if down else None,
        "up_after_uncap_s": round((up["t"] - t_uncap) / 1000, 2) if up else None,
        "switches": [(round((s["t"] - t_cap) / 1000, 2), s["level"], s["height"]) for s in switches],
        "picture_sizes": [(round((s["t"] - t_cap) / 1000, 2), f"{s['width']}x{s['height']}") for s in sizes],
        "played_seconds": round(advanced, 2),
        "startup_seconds": out["startupSeconds"],
        "excused_stalls": [(round((e["t"] - stats["started"]) / 1000, 2), e.get("seconds")) for e in excused_stalls(stats)],
        "engine": stats["engine"],
        "browser": out["browser"],
    }
    report("abr", figures)
    print(f"ABR: level before the cap {before_cap}; down to 240 {figures['down_after_cap_s']} s after the cap, "
          f"up to 360 {figures['up_after_uncap_s']} s after lifting it; switches (s from cap, level, height) "
          f"{figures['switches']}")

    # Unconstrained on loopback, ABR climbs to the top variant before the cap.
    assert before_cap == 1, ("not on 640x360 when the cap went on", figures, ctx)
    # The cap takes effect: hls.js plays the 240 line, and the picture really is 320x240.
    assert down and down["height"] == 240, ("no switch to the 240 line under the cap", figures, ctx)
    assert down["t"] - t_cap < (UNCAP_AT - CAP_AT - 2) * 1000, ("the cap took too long", figures)
    assert any(t_cap <= s["t"] < t_uncap and (s["width"], s["height"]) == (320, 240) for s in sizes), ("picture", figures)
    # While capped, no switch above it.
    assert not [s for s in switches if down["t"] <= s["t"] < t_uncap and s["level"] != 0], ("cap not held", figures)
    # Lifted: back to 640x360, in level and in the picture.
    assert up and up["height"] == 360, ("no switch back up after the cap was lifted", figures, ctx)
    assert any(s["t"] >= t_uncap and (s["width"], s["height"]) == (640, 360) for s in sizes), ("picture", figures)


# ---- HEVC ---------------------------------------------------------------------------------

HEVC_SECONDS = 10


def test_hevc_in_chromium(vid_factory, browser):
    ffmpeg = modern_ffmpeg()
    vid = vid_factory(segment="1s", part="200ms", window=6)
    pub = publish(vid.rtmp_url("hevc"), seconds=STARTUP_TIMEOUT + HEVC_SECONDS + 30, ffmpeg=ffmpeg, vcodec="libx265",
                  rate=30, gop=30, extra=["-x265-params", "log-level=error"])
    try:
        wait_live(vid, "hevc")
        master = vid.get("/live/hevc/master.m3u8").text
        codecs = re.search(r'CODECS="([^"]+)"', master).group(1)
        ours = next(c for c in codecs.split(",") if c.startswith("hvc1."))
        own_type = f'video/mp4; codecs="{ours}"'
        out, _ = run_play(browser, vid.url("/?key=hevc"), "--mse-type", HEVC_PROBE, "--mse-type", own_type,
                          "--seconds", str(HEVC_SECONDS), timeout=STARTUP_TIMEOUT + HEVC_SECONDS + 90)
    finally:
        pub.kill()
        pub.wait()
    assert out.get("mseTypes") is not None, context_of(out)
    if not out["mseTypes"][HEVC_PROBE]:
        reason = f"MediaSource.isTypeSupported('{HEVC_PROBE}') is false in {out['browser']}"
        print(f"SKIP test_hevc_in_chromium: {reason}")
        report("hevc", {"supported": False, "reason": reason, "our_codecs": ours})
        pytest.skip(reason)
    # This Chromium decodes HEVC: then it must take the codecs string we announce too.
    assert out["mseTypes"][own_type], (f"{own_type} rejected while {HEVC_PROBE} is supported", out["mseTypes"])
    stats, advanced = check_clean_playback(out, HEVC_SECONDS, min_fraction=0.7)
    assert any((s["width"], s["height"]) == (640, 360) for s in stats["videoSizes"]), stats["videoSizes"]
    report("hevc", {"supported": True, "our_codecs": ours, "played_seconds": round(advanced, 2), "browser": out["browser"]})


# ---- through a CDN edge -------------------------------------------------------------------

EDGE_SECONDS = 20


def test_play_through_edge_from_origin_page(vid_factory, edge_factory, browser):
    """The page comes from the origin, the stream from an edge on another port: hls.js
    (low-latency mode) fetches cross-origin, so the edge must send CORS headers."""
    origin = vid_factory(segment="1s", part="200ms", window=6)
    edge = edge_factory([origin], name="edge1", workers=1)
    pub = publish(origin.rtmp_url("edgy"), seconds=STARTUP_TIMEOUT + EDGE_SECONDS + 30, rate=30, gop=30)
    try:
        wait_live(origin, "edgy")
        pl = edge_playlist(edge, "edgy", segments=2)
        # CORS as the browser sees it: exactly one Access-Control-Allow-Origin (the edge
        # hides the origin's and sets its own) on playlists, parts and segments.
        page_origin = origin.url("")
        for path in ("/live/edgy/index.m3u8", "/live/edgy/master.m3u8", f"/live/edgy/{pl['segments'][-1]['uri']}"):
            r = edge.get(path, headers={"Origin": page_origin})
            assert r.status == 200, (path, r.status)
            assert r.headers.get_all("Access-Control-Allow-Origin") == ["*"], (path, r.headers.items())
        src = edge.url("/live/edgy/index.m3u8")
        out, _ = run_play(browser, origin.url("/?src=" + urllib.parse.quote(src, safe="")), "--seconds", str(EDGE_SECONDS),
                          timeout=STARTUP_TIMEOUT + EDGE_SECONDS + 90)
    finally:
        pub.kill()
        pub.wait()
    stats, advanced = check_clean_playback(out, EDGE_SECONDS)
    ctx = context_of(out)
    assert stats["src"] == src and stats["key"] == "edgy", (stats["src"], stats["key"])
    assert not [c for c in out["console"] if "CORS" in c or "Access-Control" in c], out["console"]
    # Every playlist, part and segment came from the edge, none from the origin directly.
    hosts = {r["host"] for r in out["requests"]}
    assert hosts == {f"127.0.0.1:{edge.http_port}"}, hosts
    blocking = [r for r in out["requests"] if "_HLS_msn=" in r["url"]]
    parts = [r for r in out["requests"] if re.search(r"/\d+\.\d+\.m4s$", r["url"])]
    assert blocking and parts, ("hls.js did not use LL-HLS through the edge", out["requests"][-20:])
    assert all(r["status"] == 200 for r in out["requests"] if r["status"] is not None), \
        [r for r in out["requests"] if r["status"] != 200][:10]

    lat = [s["latency"] for s in stats["latency"] if s["latency"] is not None]
    wall = [s["wall"] for s in stats["latency"] if s.get("wall") is not None]
    assert len(lat) >= 30, (f"only {len(lat)} latency samples", ctx)
    figures = {
        "median_latency": round(statistics.median(lat), 3),
        "p90_latency": round(percentile(lat, 90), 3),
        "max_latency": round(max(lat), 3),
        "median_wall_latency": round(statistics.median(wall), 3) if wall else None,
        "samples": len(lat),
        "requests": len(out["requests"]),
        "blocking_playlist_requests": len(blocking),
        "part_requests": len(parts),
        "startup_seconds": out["startupSeconds"],
        "played_seconds": round(advanced, 2),
        "excused_stalls": [(round((e["t"] - stats["started"]) / 1000, 2), e.get("seconds")) for e in excused_stalls(stats)],
        "browser": out["browser"],
    }
    report("edge", figures)
    print(f"through the edge: median latency {figures['median_latency']} s, p90 {figures['p90_latency']} s "
          f"(wall clock median {figures['median_wall_latency']} s), {figures['requests']} requests, "
          f"startup {figures['startup_seconds']} s")
    assert figures["median_latency"] < 3.0, figures


# ---- MPEG-TS -----------------------------------------------------------------------------

TS_SECONDS = 12


def test_hlsjs_plays_the_mpegts_rendition(vid_factory, browser):
    """The legacy rendition (hls_live_ts on, location /ts/) plays in hls.js too."""
    vid = vid_factory(segment="1s", part="200ms", window=6, ts=True)
    pub = publish(vid.rtmp_url("legacy"), seconds=STARTUP_TIMEOUT + TS_SECONDS + 30, rate=30, gop=30)
    try:
        wait_live(vid, "legacy", segments=3)
        src = "/ts/legacy/index.m3u8"
        out, _ = run_play(browser, vid.url("/?key=legacy&src=" + urllib.parse.quote(src, safe="")),
                          "--seconds", str(TS_SECONDS), timeout=STARTUP_TIMEOUT + TS_SECONDS + 60)
    finally:
        pub.kill()
        pub.wait()
    check_clean_playback(out, TS_SECONDS)
    assert all(r["url"].endswith((".m3u8", ".ts")) for r in out["requests"] if "/ts/" in r["url"]), out["requests"][:5]
    assert any(r["url"].endswith(".ts") for r in out["requests"]), "hls.js fetched MPEG-TS segments"
