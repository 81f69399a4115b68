"""What vid serves, checked by parsers we did not write.

Playlists go through the npm `m3u8-parser` (tests/tools/parse-m3u8.js); media through
ffprobe. Bit rates in the multivariant playlist are recomputed from the segments we
downloaded, with the definitions in LL-HLS-CHECKLIST.md (RFC 8216bis §4.1 / §4.4.6.2).

One 20 s publish is captured once for the module (every playlist update, every segment,
the init section and the multivariant playlist); the tests below each check one
aspect of that capture.
"""

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from conftest import FFPROBE, Vid, parse_playlist, publish, wait_for

TESTS = Path(__file__).resolve().parent
TOOL = TESTS / "tools" / "parse-m3u8.js"
SECONDS = 20
FPS = 30


# ---------------------------------------------------------------- m3u8-parser


# ---------------------------------------------------------------- the capture


class Capture:
    def __init__(self):
        self.playlists = []        # (text, content-type), successive distinct updates
        self.masters = []          # (text, content-type) while live
        self.master_end = None     # text after EXT-X-ENDLIST
        self.segments = {}         # uri -> (bytes, content-type)
        self.inits = {}            # uri -> (bytes, content-type)
        self.part = None           # (uri, status, content-type) of one part
        self.vid = None


@pytest.fixture(scope="module")
def capture():
    vid = Vid(workers=2, segment="1s", part="200ms", window=6).start()
    cap = Capture()
    cap.vid = vid
    key = "conf"
    pub = publish(vid.rtmp_url(key), seconds=SECONDS, rate=FPS, gop=FPS)
    try:
        wait_for(lambda: vid.get(f"/live/{key}/index.m3u8").status == 200, 20, what="first playlist")
        deadline = time.monotonic() + SECONDS + 20
        last_text = None
        while time.monotonic() < deadline:
            r = vid.get(f"/live/{key}/index.m3u8")
            assert r.status == 200, r.status
            text = r.text
            pl = parse_playlist(text)
            if text != last_text:
                cap.playlists.append((text, r.headers["Content-Type"]))
                last_text = text
            # Download what is new right away: nothing the stream produced is missed.
            for s in pl["segments"]:
                if s.get("map") and s["map"] not in cap.inits:
                    m = vid.get(f"/live/{key}/{s['map']}")
                    assert m.status == 200, s["map"]
                    cap.inits[s["map"]] = (m.body, m.headers["Content-Type"])
                if s["uri"] not in cap.segments:
                    g = vid.get(f"/live/{key}/{s['uri']}")
                    assert g.status == 200, s["uri"]
                    cap.segments[s["uri"]] = (g.body, g.headers["Content-Type"])
                    if cap.part is None:
                        uri = s["uri"].replace(".m4s", ".0.m4s")
                        p = vid.get(f"/live/{key}/{uri}")
                        cap.part = (uri, p.status, p.headers.get("Content-Type"))
            if pl.get("endlist"):
                m = vid.get(f"/live/{key}/master.m3u8")
                assert m.status == 200
                cap.master_end = m.text
                break
            if len(cap.masters) < 5:
                m = vid.get(f"/live/{key}/master.m3u8")
                assert m.status == 200, m.status
                cap.masters.append((m.text, m.headers["Content-Type"]))
            time.sleep(0.3)
        assert cap.master_end is not None, "the stream never ended"
    finally:
        pub.kill()
        pub.wait()
    yield cap
    vid.stop()
    crashes, log = vid.crashes(), vid.log()
    vid.cleanup()
    assert not crashes, f"worker crashed: {crashes}"
    assert "[alert]" not in log and "[emerg]" not in log, log[-4000:]


def msn_of(uri):
    return int(uri.split(".")[0])


def pdt(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- media playlists


def test_live_playlists_parse_and_update_correctly(capture, m3u8):
    assert len(capture.playlists) >= 15, "too few playlist updates seen"
    manifests = [m3u8(text) for text, _ in capture.playlists]
    td = manifests[0]["targetDuration"]
    assert td == 1
    prev = None
    for text, m in zip((t for t, _ in capture.playlists), manifests):
        assert m["warnings"] == [], (m["warnings"], text)
        assert m["targetDuration"] == td, "EXT-X-TARGETDURATION changed"
        segs = m["segments"]
        assert segs, text
        assert m["mediaSequence"] == msn_of(segs[0]["uri"]), "MEDIA-SEQUENCE is the first listed segment"
        uris = [msn_of(s["uri"]) for s in segs]
        assert uris == list(range(uris[0], uris[0] + len(uris))), "segments are consecutive"
        for s in segs:
            assert s["duration"] <= td + 0.5, (s, td)
            assert round(s["duration"]) <= td, (s, td)
            assert s.get("dateTimeString"), f"no EXT-X-PROGRAM-DATE-TIME on {s['uri']}"
            assert s.get("map", {}).get("uri"), f"no EXT-X-MAP for {s['uri']}"
        # PDT is unambiguous: each segment starts where the previous one ended.
        for a, b in zip(segs, segs[1:]):
            if not b.get("discontinuity"):
                assert abs(pdt(b["dateTimeString"]) - pdt(a["dateTimeString"]) - a["duration"]) < 0.0015, (a, b)
        if prev is not None:
            cur_uris = {s["uri"] for s in segs}
            removed = [s for s in prev["segments"] if s["uri"] not in cur_uris]
            assert prev["segments"][:len(removed)] == removed, "segments are removed from the head only"
            assert m["mediaSequence"] - prev["mediaSequence"] == len(removed)
            assert m["discontinuitySequence"] - prev["discontinuitySequence"] == \
                sum(1 for s in removed if s.get("discontinuity"))
            kept = prev["segments"][len(removed):]
            assert [s["duration"] for s in segs[:len(kept)]] == [s["duration"] for s in kept], \
                "a listed segment changed"
            assert not prev.get("endList"), "playlist changed after EXT-X-ENDLIST"
        prev = m
    # The window slid during the stream, and the stream ended cleanly.
    assert manifests[-1]["mediaSequence"] > 0
    assert manifests[-1].get("endList") is True
    assert all(not m.get("endList") for m in manifests[:-1])


def test_whole_stream_was_listed(capture):
    msns = sorted(msn_of(u) for u in capture.segments)
    assert msns == list(range(msns[0], msns[-1] + 1)), "a segment was never listed"
    durs = durations(capture)
    total = sum(durs[u] for u in capture.segments)
    assert abs(total - SECONDS) < 1.5, total


def durations(capture):
    """msn -> EXTINF over every playlist seen (a segment's EXTINF never changes)."""
    out = {}
    for text, _ in capture.playlists:
        for s in parse_playlist(text)["segments"]:
            out.setdefault(s["uri"], s["dur"])
            assert out[s["uri"]] == s["dur"]
    return out


# ---------------------------------------------------------------- multivariant


def test_multivariant_playlist(capture, m3u8):
    for text in [t for t, _ in capture.masters] + [capture.master_end]:
        m = m3u8(text)
        assert m["warnings"] == [], m["warnings"]
        assert len(m["playlists"]) == 1, text
        p = m["playlists"][0]
        assert p["uri"] == "index.m3u8"
        a = p["attributes"]
        codecs = a["CODECS"].split(",")
        assert any(c.startswith("avc1.") for c in codecs) and "mp4a.40.2" in codecs, a
        assert a["RESOLUTION"] == {"width": 640, "height": 360}, a
        assert abs(float(a["FRAME-RATE"]) - FPS) < 0.01, a
        # m3u8-parser converts BANDWIDTH to a number, leaves AVERAGE-BANDWIDTH a string.
        assert a["BANDWIDTH"] >= int(a["AVERAGE-BANDWIDTH"]) > 0, a
        assert "#EXT-X-INDEPENDENT-SEGMENTS" in text


def recomputed_bandwidth(capture):
    durs = durations(capture)
    segs = sorted(((msn_of(u), durs[u], len(body)) for u, (body, _) in capture.segments.items()))
    td = parse_playlist(capture.playlists[0][0])["target"]
    lo, hi = 0.5 * td, 1.5 * td
    peak = 0.0
    for j in range(len(segs)):
        bits = dur = 0.0
        for i in range(j, -1, -1):
            bits += segs[i][2] * 8
            dur += segs[i][1]
            if dur > hi:
                break
            if dur >= lo:
                peak = max(peak, bits / dur)
    avg = sum(s[2] * 8 for s in segs) / sum(s[1] for s in segs)
    return peak, avg


def test_bandwidth_matches_the_segments(capture, m3u8):
    """After EXT-X-ENDLIST the server's figures cover exactly the media we downloaded."""
    a = m3u8(capture.master_end)["playlists"][0]["attributes"]
    peak, avg = recomputed_bandwidth(capture)
    assert peak > 0 and avg > 0
    assert int(a["AVERAGE-BANDWIDTH"]) == pytest.approx(avg, rel=0.02), (a, avg)
    assert a["BANDWIDTH"] == pytest.approx(peak, rel=0.02), (a, peak)


# ---------------------------------------------------------------- segments


def probe_segment(init, body, path):
    path.write_bytes(init + body)
    first = json.loads(subprocess.run(
        [FFPROBE, "-v", "error", "-of", "json", "-select_streams", "v", "-show_frames",
         "-show_entries", "frame=key_frame,pict_type", "-read_intervals", "%+#1", str(path)],
        capture_output=True, text=True, timeout=60).stdout)["frames"]
    pk = json.loads(subprocess.run(
        [FFPROBE, "-v", "error", "-of", "json", "-select_streams", "v",
         "-show_entries", "packet=dts_time,duration_time,flags", str(path)],
        capture_output=True, text=True, timeout=60).stdout)["packets"]
    return first, pk


def test_every_segment_starts_with_idr_and_lasts_its_extinf(capture, tmp_path):
    if not Path(FFPROBE).exists():
        pytest.skip("ffprobe not installed")
    durs = durations(capture)
    maps = {}
    for text, _ in capture.playlists:
        for s in parse_playlist(text)["segments"]:
            maps[s["uri"]] = s["map"] if "map" in s else maps.get(s["uri"])
    # parse_playlist sets "map" only where EXT-X-MAP appears: later segments use the last one.
    current = None
    for uri in sorted(capture.segments, key=msn_of):
        current = maps.get(uri) or current
        maps[uri] = current
    frame = 1 / FPS

    def check(uri):
        init = capture.inits[maps[uri]][0]
        first, pk = probe_segment(init, capture.segments[uri][0], tmp_path / uri.replace(".m4s", ".mp4"))
        assert first and first[0]["key_frame"] == 1 and first[0]["pict_type"] == "I", (uri, first)
        assert pk[0]["flags"].startswith("K"), (uri, pk[0])
        video = sum(float(p["duration_time"]) for p in pk)
        assert abs(video - durs[uri]) <= frame + 0.001, (uri, video, durs[uri])
        return uri

    with ThreadPoolExecutor(8) as ex:
        done = list(ex.map(check, sorted(capture.segments, key=msn_of)))
    assert len(done) == len(capture.segments)


def test_mime_types(capture):
    for _, ct in capture.playlists + capture.masters:
        assert ct == "application/vnd.apple.mpegurl"
    for uri, (_, ct) in list(capture.segments.items()) + list(capture.inits.items()):
        assert ct == "video/mp4", (uri, ct)
    uri, status, ct = capture.part
    assert status == 200 and ct == "video/mp4", capture.part


# ---------------------------------------------------------------- known gaps


def test_republish_with_longer_gop_keeps_segments_within_target(vid_factory, m3u8):
    vid = vid_factory(segment="1s", window=12)
    assert publish(vid.rtmp_url("regop"), seconds=3, gop=FPS, size="320x240").wait(30) == 0
    wait_for(lambda: parse_playlist(vid.get("/live/regop/index.m3u8").text).get("endlist"), 10, what="ENDLIST")
    assert publish(vid.rtmp_url("regop"), seconds=6, gop=3 * FPS, size="320x240").wait(30) == 0
    wait_for(lambda: parse_playlist(vid.get("/live/regop/index.m3u8").text).get("endlist")
             and "#EXT-X-DISCONTINUITY\n" in vid.get("/live/regop/index.m3u8").text, 10, what="second ENDLIST")
    m = m3u8(vid.get("/live/regop/index.m3u8").text)
    assert any(s.get("discontinuity") for s in m["segments"])
    for s in m["segments"]:
        assert round(s["duration"]) <= m["targetDuration"], (s, m["targetDuration"])
