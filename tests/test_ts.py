"""The MPEG-TS rendition: the same segments as fMP4, for legacy players (`/ts/` location)."""

import subprocess

from conftest import DEBIAN_FFMPEG, ffprobe_json, modern_ffmpeg, parse_playlist, publish, wait_for


def ts_playlist(vid, key):
    r = vid.get(f"/ts/{key}/index.m3u8")
    return parse_playlist(r.text) if r.status == 200 else None


def wait_ts(vid, key, segments, timeout=30):
    def ready():
        pl = ts_playlist(vid, key)
        return pl if pl and len(pl["segments"]) >= segments else None

    return wait_for(ready, timeout, step=0.2, what=f"{segments} TS segment(s) of {key}")


def summary(pl):
    """What both playlists must agree on, with the URIs reduced to their msn."""
    return (pl["target"], pl["msn"], pl["dsn"], pl.get("endlist", False),
            [(int(s["uri"].split(".")[0]), s["dur"], s.get("pdt"), s.get("disc", False))
             for s in pl["segments"]])


def same_snapshot(vid, key):
    """The TS and fMP4 playlists of one moment (retried until no segment lands between)."""
    for _ in range(20):
        a = vid.get(f"/ts/{key}/index.m3u8").text
        f = vid.get(f"/live/{key}/index.m3u8").text
        b = vid.get(f"/ts/{key}/index.m3u8").text
        if a == b:
            return a, f
    raise AssertionError("playlists kept changing")


def test_ts_rendition_h264_aac(vid_factory, tmp_path):
    vid = vid_factory(segment="1s", window=10, ts=True)
    pub = publish(vid.rtmp_url("legacy"), seconds=12, bframes=2)
    try:
        wait_ts(vid, "legacy", 4)
        r = vid.get("/ts/legacy/index.m3u8")
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        text = r.text
        assert "#EXT-X-VERSION:3\n" in text
        for tag in ("#EXT-X-MAP", "#EXT-X-PART", "#EXT-X-SERVER-CONTROL", "#EXT-X-PRELOAD-HINT", ".m4s"):
            assert tag not in text, text
        # Blocking parameters mean nothing here: answered at once, same playlist.
        r = vid.get("/ts/legacy/index.m3u8?_HLS_msn=999&_HLS_part=0", timeout=3)
        assert r.status == 200 and "#EXT-X-VERSION:3" in r.text

        # Same msns, EXTINF, PDT, sequence numbers as the fMP4 playlist.
        ts_text, fmp4_text = same_snapshot(vid, "legacy")
        assert summary(parse_playlist(ts_text)) == summary(parse_playlist(fmp4_text)), (ts_text, fmp4_text)

        # Debian ffmpeg 5.1 plays the TS playlist without a word.
        play = subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", vid.url("/ts/legacy/index.m3u8"),
                               "-t", "4", "-f", "null", "-"], capture_output=True, text=True, timeout=60)
        assert play.returncode == 0 and play.stderr.strip() == "", play.stderr

        # A TS multivariant playlist for this location.
        mv = vid.get("/ts/legacy/master.m3u8")
        assert mv.status == 200 and "avc1." in mv.text and mv.text.rstrip().endswith("index.m3u8")
    finally:
        out = pub.communicate(timeout=60)[1].decode(errors="replace")
    assert pub.returncode == 0, out

    # Ended: both playlists final and identical in content.
    pl = wait_for(lambda: (lambda p: p if p and p.get("endlist") else None)(ts_playlist(vid, "legacy")),
                  10, what="ENDLIST")
    fmp4 = parse_playlist(vid.get("/live/legacy/index.m3u8").text)
    assert summary(pl) == summary(fmp4)
    assert len(pl["segments"]) >= 6

    # Consecutive segments, concatenated: one continuous transport stream.
    data = bytearray()
    for seg in pl["segments"][1:5]:
        r = vid.get(f"/ts/legacy/{seg['uri']}")
        assert r.status == 200, seg
        assert r.headers["Content-Type"] == "video/mp2t"
        assert len(r.body) % 188 == 0 and r.body[0] == 0x47
        # Every segment opens with PAT and PMT, and its video starts with a keyframe.
        one = tmp_path / seg["uri"]
        one.write_bytes(r.body)
        first = ffprobe_json(one, "-select_streams", "v", "-read_intervals", "%+#1",
                             "-show_entries", "packet=flags")["packets"][0]
        assert first["flags"].startswith("K"), (seg, first)
        data += r.body
    media = tmp_path / "all.ts"
    media.write_bytes(bytes(data))
    info = ffprobe_json(media, "-show_streams", "-show_format")
    assert info["format"]["format_name"] == "mpegts"
    kinds = {s["codec_type"]: s for s in info["streams"]}
    assert kinds["video"]["codec_name"] == "h264"
    assert (kinds["video"]["width"], kinds["video"]["height"]) == (640, 360)
    assert kinds["audio"]["codec_name"] == "aac"
    assert int(kinds["audio"]["sample_rate"]) == 44100

    def times(stream, key):
        pk = ffprobe_json(media, "-select_streams", stream, "-show_entries", f"packet={key}")["packets"]
        return [float(p[key]) for p in pk]

    # Video DTS: 30 fps without gaps or steps back across the four segments.
    dts = times("v", "dts_time")
    steps = [b - a for a, b in zip(dts, dts[1:])]
    assert all(0.02 < s < 0.05 for s in steps), (min(steps), max(steps))
    total = sum(s["dur"] for s in pl["segments"][1:5])
    assert abs((dts[-1] - dts[0]) - total) < 0.1, (dts[-1] - dts[0], total)
    # PTS: B-frames reorder, but never by more than a few frames, and cover the same span.
    pts = sorted(times("v", "pts_time"))
    psteps = [b - a for a, b in zip(pts, pts[1:])]
    assert all(0.02 < s < 0.05 for s in psteps), (min(psteps), max(psteps))
    # Audio: one AAC frame after another (1024 / 44100 s), no gap at segment joins.
    adts = times("a", "pts_time")
    asteps = [b - a for a, b in zip(adts, adts[1:])]
    assert all(0.015 < s < 0.035 for s in asteps), (min(asteps), max(asteps))
    decode = subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", str(media), "-f", "null", "-"],
                            capture_output=True, text=True, timeout=60)
    assert decode.stderr.strip() == "", decode.stderr


def test_hevc_has_no_ts_rendition(vid_factory):
    ffmpeg = modern_ffmpeg()
    vid = vid_factory(segment="1s", ts=True)
    pub = publish(vid.rtmp_url("hevc"), seconds=10, ffmpeg=ffmpeg, vcodec="libx265",
                  extra=["-x265-params", "log-level=error"])
    try:
        def fmp4_ready():
            r = vid.get("/live/hevc/index.m3u8")
            return r.status == 200 and len(parse_playlist(r.text)["segments"]) >= 2
        wait_for(fmp4_ready, 30, step=0.2, what="fMP4 segments of the HEVC stream")
        assert "hvc1." in vid.get("/live/hevc/master.m3u8").text
        assert vid.get("/ts/hevc/index.m3u8").status == 404
        assert vid.get("/ts/hevc/master.m3u8").status == 404
        seg = parse_playlist(vid.get("/live/hevc/index.m3u8").text)["segments"][0]["uri"]
        assert vid.get(f"/ts/hevc/{seg.replace('.m4s', '.ts')}").status == 404
        assert not list((vid.prefix / "media" / "hevc").glob("*.ts"))
        # fMP4 plays.
        play = subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", vid.playlist_url("hevc"), "-t", "2", "-f", "null", "-"],
                              capture_output=True, text=True, timeout=60)
        assert play.returncode == 0 and play.stderr.strip() == "", play.stderr
    finally:
        pub.kill()
        pub.wait()


def test_ts_directives(tmp_path):
    from conftest import Vid

    v = Vid(ts=True)
    try:
        conf = v.prefix / "conf" / "nginx.conf"
        good = conf.read_text()
        assert "hls_live_ts on;" in good and "hls_live_format ts;" in good
        for old, new, msg in [
            ("hls_live_format ts;", "hls_live_format hls;", 'invalid value "hls"'),
            ("hls_live_ts on;", "hls_live_ts maybe;", "invalid value"),
            ("hls_live_format ts;", "hls_live_format ts; hls_live_format fmp4;", "is duplicate"),
            ("hls_live_ts on;", "hls_live_ts off;", None),
        ]:
            conf.write_text(good.replace(old, new))
            r = v.nginx("-t", check=False)
            if msg is None:
                assert r.returncode == 0, r.stderr
            else:
                assert r.returncode != 0 and msg in r.stderr, r.stderr
    finally:
        v.cleanup()
