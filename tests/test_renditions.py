"""Codecs and renditions: HEVC over Enhanced RTMP, audio-only and video-only streams,
ABR groups (hls_live_variants) with rendition reports, resolution change mid-stream."""

import subprocess
import time

from conftest import (DEBIAN_FFMPEG, ffprobe_json, modern_ffmpeg, parse_playlist, publish,
                      wait_for)


def playlist(vid, key, segments=2, timeout=25):
    def ready():
        r = vid.get(f"/live/{key}/index.m3u8")
        if r.status == 200:
            pl = parse_playlist(r.text)
            if len(pl["segments"]) >= segments:
                return r.text, pl
        return None

    return wait_for(ready, timeout, step=0.2, what=f"{segments} segments of {key}")


def init_and_segments(vid, key, pl, dest):
    init = next(s["map"] for s in pl["segments"] if s.get("map"))
    data = vid.get(f"/live/{key}/{init}").body
    for s in pl["segments"]:
        data += vid.get(f"/live/{key}/{s['uri']}").body
    dest.write_bytes(data)
    return dest


def test_hevc_enhanced_rtmp(vid_factory, tmp_path, m3u8):
    ffmpeg = modern_ffmpeg()
    vid = vid_factory(segment="1s")
    pub = publish(vid.rtmp_url("hevc"), seconds=12, ffmpeg=ffmpeg, vcodec="libx265",
                  extra=["-x265-params", "log-level=error"])
    try:
        _, pl = playlist(vid, "hevc", segments=3)
        media = init_and_segments(vid, "hevc", pl, tmp_path / "hevc.mp4")
        streams = {s["codec_type"]: s for s in ffprobe_json(media, "-show_streams")["streams"]}
        assert streams["video"]["codec_name"] == "hevc"
        assert streams["video"]["codec_tag_string"] == "hvc1", "Apple wants hvc1 sample entries"
        assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)
        assert streams["audio"]["codec_name"] == "aac"
        master = m3u8(vid.get("/live/hevc/master.m3u8").text)
        codecs = master["playlists"][0]["attributes"]["CODECS"]
        assert codecs.startswith("hvc1.1.") and "mp4a.40.2" in codecs, codecs
        # The modern ffmpeg's HLS demuxer decodes the live HEVC playlist without errors.
        play = subprocess.run([ffmpeg, "-v", "error", "-i", vid.playlist_url("hevc"), "-t", "3", "-f", "null", "-"],
                              capture_output=True, text=True, timeout=60)
        assert play.returncode == 0 and play.stderr.strip() == "", play.stderr
    finally:
        pub.kill()
        pub.wait()


def test_audio_only_and_video_only(vid_factory, tmp_path, m3u8):
    vid = vid_factory(segment="1s", workers=2)
    a = publish(vid.rtmp_url("radio"), seconds=10, video=False)
    v = publish(vid.rtmp_url("silent"), seconds=10, audio=False)
    try:
        _, pa = playlist(vid, "radio", segments=3)
        _, pv = playlist(vid, "silent", segments=3)
        sa = ffprobe_json(init_and_segments(vid, "radio", pa, tmp_path / "a.mp4"), "-show_streams")["streams"]
        sv = ffprobe_json(init_and_segments(vid, "silent", pv, tmp_path / "v.mp4"), "-show_streams")["streams"]
        assert [s["codec_type"] for s in sa] == ["audio"]
        assert [s["codec_type"] for s in sv] == ["video"]
        seg = pa["segments"][0]["uri"]
        assert vid.get(f"/live/radio/{seg}").headers["Content-Type"] == "audio/mp4"
        ma = m3u8(vid.get("/live/radio/master.m3u8").text)["playlists"][0]["attributes"]
        mv = m3u8(vid.get("/live/silent/master.m3u8").text)["playlists"][0]["attributes"]
        assert ma["CODECS"] == "mp4a.40.2" and "RESOLUTION" not in ma
        assert mv["CODECS"].startswith("avc1.") and "mp4a" not in mv["CODECS"]
        assert mv["RESOLUTION"] == {"width": 640, "height": 360}
        for key in ("radio", "silent"):
            play = subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", vid.playlist_url(key), "-t", "3", "-f", "null", "-"],
                                  capture_output=True, text=True, timeout=60)
            assert play.returncode == 0 and play.stderr.strip() == "", (key, play.stderr)
    finally:
        for p in (a, v):
            p.kill()
            p.wait()


def test_abr_group_multivariant_and_rendition_reports(vid_factory, m3u8):
    vid = vid_factory(segment="1s", workers=2, live_extra="hls_live_variants _hi _lo;")
    hi = publish(vid.rtmp_url("show_hi"), seconds=15, size="640x360")
    lo = publish(vid.rtmp_url("show_lo"), seconds=15, size="320x240")
    try:
        playlist(vid, "show_hi", 3)
        playlist(vid, "show_lo", 3)
        # One multivariant playlist for the group, reachable from the base key and from
        # every rendition; relative URIs; each variant with its own measured figures.
        text = vid.get("/live/show/master.m3u8").text
        assert vid.get("/live/show_lo/master.m3u8").text.splitlines()[:2] == text.splitlines()[:2]
        master = m3u8(text)
        assert not master["warnings"], master["warnings"]
        uris = [p["uri"] for p in master["playlists"]]
        assert uris == ["../show_hi/index.m3u8", "../show_lo/index.m3u8"]
        attrs = [p["attributes"] for p in master["playlists"]]
        assert attrs[0]["RESOLUTION"] == {"width": 640, "height": 360}
        assert attrs[1]["RESOLUTION"] == {"width": 320, "height": 240}
        assert attrs[0]["BANDWIDTH"] > attrs[1]["BANDWIDTH"] > 0
        for a in attrs:
            assert int(a["BANDWIDTH"]) >= int(a["AVERAGE-BANDWIDTH"]) > 0 and "mp4a.40.2" in a["CODECS"]
        # Each rendition reports the other, in step within about one part.
        for me, other in (("show_hi", "show_lo"), ("show_lo", "show_hi")):
            body = vid.get(f"/live/{me}/index.m3u8").text
            reports = [l for l in body.splitlines() if l.startswith("#EXT-X-RENDITION-REPORT:")]
            assert reports == [l for l in reports if f'URI="../{other}/index.m3u8"' in l] and len(reports) == 1, body
            attrs = dict(kv.split("=", 1) for kv in reports[0].split(":", 1)[1].split(","))
            theirs = parse_playlist(vid.get(f"/live/{other}/index.m3u8").text)
            assert abs(int(attrs["LAST-MSN"]) - (theirs["msn"] + len(theirs["segments"]))) <= 1
            parsed = m3u8(body)
            assert not parsed["warnings"], parsed["warnings"]
    finally:
        for p in (hi, lo):
            p.kill()
            p.wait()


def test_resolution_change_mid_stream(vid_factory, m3u8):
    """The encoder restarts with other settings on the same key: a discontinuity, a new
    init section before the new segments, and the multivariant playlist follows."""
    vid = vid_factory(segment="1s", window=12)
    first = publish(vid.rtmp_url("switch"), seconds=4, size="640x360")
    first.wait(30)
    before = m3u8(vid.get("/live/switch/master.m3u8").text)["playlists"][0]["attributes"]
    assert before["RESOLUTION"] == {"width": 640, "height": 360}
    second = publish(vid.rtmp_url("switch"), seconds=10, size="320x240")
    try:
        def switched():
            pl = parse_playlist(vid.get("/live/switch/index.m3u8").text)
            new = [s for s in pl["segments"] if s.get("disc")]
            return pl if new and not pl.get("endlist") and pl["segments"][-1] is not new[0] else None

        pl = wait_for(switched, 20, what="segments after the change")
        disc = next(s for s in pl["segments"] if s.get("disc"))
        maps = [s["map"] for s in pl["segments"] if s.get("map")]
        assert len(maps) == 2 and disc.get("map") == maps[1] != maps[0]
        init = vid.get(f"/live/switch/{maps[1]}")
        assert init.status == 200
        time.sleep(1.5)
        after = m3u8(vid.get("/live/switch/master.m3u8").text)["playlists"][0]["attributes"]
        assert after["RESOLUTION"] == {"width": 320, "height": 240}
    finally:
        second.kill()
        second.wait()
