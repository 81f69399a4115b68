"""The segmenter's timeline rules with real encoders, checked by the npm m3u8-parser
and ffprobe: TARGETDURATION with an irregular GOP, PART-TARGET at 29.97 fps, HEVC open
GOPs (CRA keyframes) and PROGRAM-DATE-TIME when a publisher bursts.
"""

import subprocess
import time
from datetime import datetime

from conftest import DEBIAN_FFMPEG, ffprobe_json, modern_ffmpeg, parse_playlist, publish, wait_for


def ended(vid, key, timeout=40):
    def done():
        r = vid.get(f"/live/{key}/index.m3u8")
        return r.status == 200 and parse_playlist(r.text).get("endlist") and r.text
    return wait_for(done, timeout, step=0.2, what=f"ENDLIST of {key}")


def check_parts(m, text):
    """Every part within PART-TARGET; every part but a segment's last >= 85% of it."""
    pt = m["partInf"]["partTarget"]
    assert f"PART-TARGET={pt:.3f}" in text
    checked = 0
    for s in m["segments"] + [m.get("preloadSegment") or {"parts": []}]:
        parts = s.get("parts") or []
        for i, p in enumerate(parts):
            assert p["duration"] <= pt + 1e-9, (p, pt)
            if i + 1 < len(parts) and not p.get("independent"):
                assert p["duration"] >= 0.85 * pt - 1e-9, (p, pt)
            checked += 1
    return checked


def test_irregular_gop_keeps_every_extinf_within_target_duration(vid_factory, m3u8):
    # The stream of the bug report: keyframes at 0, 2, 4, 7 and 10 s, 2 s segments.
    vid = vid_factory(segment="2s", part="200ms", window=12)
    pub = publish(vid.rtmp_url("irr"), seconds=12, size="320x240", gop=600,
                  extra=["-force_key_frames", "0,2,4,7,10", "-x264-params", "scenecut=0"])
    text = ended(vid, "irr")
    assert pub.wait(30) == 0, pub.stderr.read()
    m = m3u8(text)
    assert not m["warnings"], m["warnings"]
    assert m["targetDuration"] == 2
    durs = [s["duration"] for s in m["segments"]]
    assert all(round(d) <= 2 for d in durs), durs
    assert abs(sum(durs) - 12) < 0.3, durs
    # 4 -> 7 s is cut without a keyframe (2.4 s + 0.6 s); so is 7 -> 10 s.
    assert durs[:3] == [2.0, 2.0, 2.4], durs
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in text, "a segment starts without a keyframe"
    check_parts(m, text)
    # HOLD-BACK follows TD.
    assert m["serverControl"]["holdBack"] == 6


def test_2997_fps_parts_meet_the_advertised_part_target(vid_factory, m3u8):
    vid = vid_factory(segment="2s", part="200ms", window=6)
    pub = publish(vid.rtmp_url("ntsc"), seconds=10, size="320x240", rate="30000/1001", gop=60)
    checked = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and pub.poll() is None:
            r = vid.get("/live/ntsc/index.m3u8")
            if r.status == 200:
                m = m3u8(r.text)
                assert m["partInf"]["partTarget"] == 0.201, r.text
                checked += check_parts(m, r.text)
            time.sleep(0.3)
    finally:
        pub.kill()
        pub.wait()
    assert checked > 50


def test_hevc_open_gop_segments_follow_the_gop(vid_factory, m3u8, tmp_path):
    # x265 defaults (open GOP): an IDR, then a CRA every 2 s with RASL leading pictures.
    ffmpeg = modern_ffmpeg()
    vid = vid_factory(segment="2s", part="200ms", window=12)
    pub = publish(vid.rtmp_url("cra"), seconds=9, ffmpeg=ffmpeg, vcodec="libx265", size="320x240",
                  rate=30, gop=60, extra=["-keyint_min", "60", "-x265-params", "scenecut=0:log-level=error"])
    text = ended(vid, "cra", timeout=60)
    assert pub.wait(30) == 0, pub.stderr.read()
    m = m3u8(text)
    assert m["targetDuration"] == 2, text
    durs = [s["duration"] for s in m["segments"]]
    # From the first segment on: one GOP per segment (the first ends at the CRA's
    # decode time, two frames before it is shown).
    assert all(1.85 <= d <= 2.05 for d in durs[:-1]), durs
    assert len(durs) >= 4, durs
    # RASL pictures reference the previous segment: no INDEPENDENT-SEGMENTS.
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in text
    check_parts(m, text)
    # The whole stream decodes; every segment starts with a keyframe.
    init = next(s["map"]["uri"] for s in m["segments"] if s.get("map"))
    data = vid.get(f"/live/cra/{init}").body
    for s in m["segments"]:
        data += vid.get(f"/live/cra/{s['uri']}").body
    media = tmp_path / "cra.mp4"
    media.write_bytes(data)
    frames = ffprobe_json(media, "-select_streams", "v", "-count_frames", "-show_streams")["streams"][0]
    assert int(frames["nb_read_frames"]) >= 9 * 30 - 5
    for s in m["segments"][1:3]:
        seg = tmp_path / "one.mp4"
        seg.write_bytes(vid.get(f"/live/cra/{init}").body + vid.get(f"/live/cra/{s['uri']}").body)
        first = ffprobe_json(seg, "-select_streams", "v", "-show_frames", "-read_intervals", "%+#1",
                             "-show_entries", "frame=key_frame")["frames"][0]
        assert first["key_frame"] == 1, s


def test_program_date_time_stays_near_the_arrival_when_the_publisher_bursts(vid_factory):
    # No -re: ffmpeg sends 20 s of media as fast as it can encode it.
    vid = vid_factory(segment="1s", part="200ms", window=30)
    cmd = [DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error",
           "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "20",
           "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
           "-c:a", "aac", "-f", "flv", vid.rtmp_url("burst")]
    started = time.time()
    pub = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert pub.wait(60) == 0, pub.stderr.read()
    finished = time.time()
    text = ended(vid, "burst")
    pl = parse_playlist(text)
    assert sum(s["dur"] for s in pl["segments"]) > 19
    pdts = [datetime.fromisoformat(s["pdt"].replace("Z", "+00:00")).timestamp() for s in pl["segments"]]
    assert pdts == sorted(pdts)
    # Every segment is dated no later than the end of the upload (+ the 0.5 s bound and
    # a margin), although it holds up to 20 s of media.
    assert max(pdts) <= finished + 1.0, (max(pdts) - finished, finished - started)
    assert min(pdts) >= started - 1.0
