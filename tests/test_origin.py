"""The live origin end to end: RTMP in, fMP4 HLS out, inside a real nginx."""

import subprocess
import time
from pathlib import Path

import pytest

from conftest import (DEBIAN_FFMPEG, ffprobe_json, modern_ffmpeg, parse_playlist, publish,
                      wait_for)


def wait_playlist(vid, key, segments=1, timeout=20):
    def ready():
        r = vid.get(f"/live/{key}/index.m3u8")
        if r.status == 200:
            pl = parse_playlist(r.text)
            if len(pl["segments"]) >= segments:
                return pl
        return None

    return wait_for(ready, timeout, step=0.2, what=f"{segments} segment(s) of {key}")


def poll_rules(vid, key, seconds, history):
    """Poll the live playlist; check rules that must hold across successive updates."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = vid.get(f"/live/{key}/index.m3u8")
        assert r.status == 200, r.status
        assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert "max-age=" in r.headers.get("Cache-Control", "")
        text = r.text
        assert text.startswith("#EXTM3U\n")
        assert "_HLS_" not in text
        pl = parse_playlist(text)
        assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
        assert "#EXT-X-PLAYLIST-TYPE" not in text
        assert pl["version"] >= 6
        for seg in pl["segments"]:
            assert "pdt" in seg, "every segment carries EXT-X-PROGRAM-DATE-TIME"
            assert round(seg["dur"]) <= pl["target"], (seg, pl["target"])
        if history:
            prev = history[-1]
            assert pl["target"] == prev["target"], "TARGETDURATION never changes"
            assert pl["msn"] >= prev["msn"], "MEDIA-SEQUENCE never goes back"
            assert pl["dsn"] >= prev["dsn"]
            # Segments that stay listed are unchanged; the head only moves forward.
            prev_by_uri = {s["uri"]: s for s in prev["segments"]}
            for s in pl["segments"]:
                if s["uri"] in prev_by_uri:
                    assert s["dur"] == prev_by_uri[s["uri"]]["dur"]
            first_new = int(pl["segments"][0]["uri"].split(".")[0])
            assert first_new == pl["msn"], "MEDIA-SEQUENCE is the first listed segment"
        history.append(pl)
        time.sleep(0.3)
    return history


def fetch_media(vid, key, pl, dest: Path):
    """Download init + listed segments and concatenate them into one fMP4 file."""
    init = pl["segments"][0].get("map") or "init0.mp4"
    r = vid.get(f"/live/{key}/{init}")
    assert r.status == 200 and r.headers["Content-Type"] in ("video/mp4", "audio/mp4")
    data = bytearray(r.body)
    for seg in pl["segments"]:
        r = vid.get(f"/live/{key}/{seg['uri']}")
        assert r.status == 200, seg
        data += r.body
    dest.write_bytes(bytes(data))
    return dest


PUBLISHERS = {
    "ffmpeg5.1": lambda: DEBIAN_FFMPEG,
    "ffmpeg-modern": modern_ffmpeg,
}


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("publisher", sorted(PUBLISHERS))
def test_publish_play_and_end(vid_factory, tmp_path, publisher, workers):
    ffmpeg = PUBLISHERS[publisher]()
    vid = vid_factory(workers=workers)
    pub = publish(vid.rtmp_url("demo"), seconds=20, ffmpeg=ffmpeg, bframes=2)
    try:
        wait_playlist(vid, "demo", segments=2)
        # ffmpeg's own HLS demuxer follows the live playlist and decodes without errors.
        play = subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", vid.playlist_url("demo"), "-t", "4", "-f", "null", "-"],
                              capture_output=True, text=True, timeout=60)
        assert play.returncode == 0 and play.stderr.strip() == "", play.stderr
        history = poll_rules(vid, "demo", 8, [])
        pl = history[-1]
        assert len(pl["segments"]) >= 3
        media = fetch_media(vid, "demo", pl, tmp_path / "all.mp4")
        info = ffprobe_json(media, "-show_streams", "-show_format")
        kinds = {s["codec_type"]: s for s in info["streams"]}
        assert kinds["video"]["codec_name"] == "h264"
        assert (kinds["video"]["width"], kinds["video"]["height"]) == (640, 360)
        assert kinds["audio"]["codec_name"] == "aac"
        # Continuous timestamps across the concatenated segments: no gaps, no overlaps.
        pk = ffprobe_json(media, "-select_streams", "v", "-show_entries", "packet=dts_time,duration_time")["packets"]
        dts = [float(p["dts_time"]) for p in pk]
        steps = [b - a for a, b in zip(dts, dts[1:])]
        assert all(0.02 < s < 0.05 for s in steps), sorted(steps)[-3:]
        total = sum(s["dur"] for s in pl["segments"])
        assert abs((dts[-1] - dts[0]) - total) < 0.2
        decode = subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", str(media), "-f", "null", "-"],
                                capture_output=True, text=True, timeout=60)
        assert decode.stderr.strip() == "", decode.stderr
    finally:
        out = pub.communicate(timeout=60)[1].decode(errors="replace")
    assert pub.returncode == 0, out
    # The stream ended: EXT-X-ENDLIST, and the media stays for the playlist duration.
    pl = wait_for(lambda: (lambda p: p if p.get("endlist") else None)(parse_playlist(vid.get("/live/demo/index.m3u8").text)),
                  10, what="ENDLIST")
    assert vid.get(f"/live/demo/{pl['segments'][-1]['uri']}").status == 200
    assert 'publish "live/demo" ended' in vid.log()


def test_media_removed_after_retention(vid_factory):
    vid = vid_factory(segment="1s", window=3)
    pub = publish(vid.rtmp_url("gone"), seconds=5)
    pl = wait_playlist(vid, "gone", segments=2)
    pub.wait(30)
    uri = pl["segments"][0]["uri"]
    wait_for(lambda: "endlist" in parse_playlist(vid.get("/live/gone/index.m3u8").text), 10, what="ENDLIST")
    # Retention = playlist duration after the end (3 x 1 s here), then everything is gone.
    wait_for(lambda: vid.get("/live/gone/index.m3u8").status == 404, 20, what="playlist 404")
    assert vid.get(f"/live/gone/{uri}").status == 404
    wait_for(lambda: not (vid.prefix / "media" / "gone").exists(), 10, what="stream folder removed")


def test_republish_continues_with_discontinuity(vid_factory):
    vid = vid_factory(segment="1s", window=6)
    pub = publish(vid.rtmp_url("again"), seconds=4)
    pub.wait(30)
    first = wait_for(lambda: (lambda p: p if p.get("endlist") else None)(parse_playlist(vid.get("/live/again/index.m3u8").text)),
                     10, what="ENDLIST")
    last_msn = first["msn"] + len(first["segments"]) - 1
    pub = publish(vid.rtmp_url("again"), seconds=12)
    try:
        def republished():
            p = parse_playlist(vid.get("/live/again/index.m3u8").text)
            return p if not p.get("endlist") and any(s.get("disc") for s in p["segments"]) and \
                int(p["segments"][-1]["uri"].split(".")[0]) > last_msn + 1 else None
        pl = wait_for(republished, 20, what="republished playlist")
        uris = [int(s["uri"].split(".")[0]) for s in pl["segments"]]
        assert uris == list(range(uris[0], uris[0] + len(uris))), "MEDIA-SEQUENCE continues"
        disc = [s for s in pl["segments"] if s.get("disc")]
        assert int(disc[0]["uri"].split(".")[0]) == last_msn + 1
        assert disc[0].get("map"), "EXT-X-MAP repeated after the discontinuity"
        # Once the discontinuity scrolls out, DISCONTINUITY-SEQUENCE counts it.
        pl = wait_for(lambda: (lambda p: p if p["msn"] > last_msn + 1 else None)(parse_playlist(vid.get("/live/again/index.m3u8").text)),
                      20, what="discontinuity to scroll out")
        assert pl["dsn"] == 1
    finally:
        pub.kill()
        pub.wait()


def test_two_streams_and_second_publisher_refused(vid_factory):
    # The default lets the newest publisher take a key over (tests/test_lifecycle.py).
    vid = vid_factory(workers=2, stream_extra="rtmp_live_takeover off;")
    a = publish(vid.rtmp_url("alpha"), seconds=12)
    b = publish(vid.rtmp_url("beta"), seconds=12, size="320x240")
    try:
        wait_playlist(vid, "alpha", 2)
        wait_playlist(vid, "beta", 2)
        # A second publisher on a live key is refused; the first keeps going.
        dup = publish(vid.rtmp_url("alpha"), seconds=5)
        assert dup.wait(30) != 0
        assert 'stream "alpha" is already being published' in vid.log()
        before = parse_playlist(vid.get("/live/alpha/index.m3u8").text)
        time.sleep(2.5)
        after = parse_playlist(vid.get("/live/alpha/index.m3u8").text)
        assert after["segments"][-1]["uri"] != before["segments"][-1]["uri"]
        assert not after.get("endlist")
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


def test_reload_during_publish(vid_factory):
    vid = vid_factory(workers=2)
    pub = publish(vid.rtmp_url("reload"), seconds=16)
    try:
        wait_playlist(vid, "reload", 2)
        old = set(vid.worker_pids())
        vid.reload()
        wait_for(lambda: set(vid.worker_pids()) and not (set(vid.worker_pids()) & old), 10, what="new workers")
        # The publisher (still on an old worker) keeps feeding; new workers serve it.
        last = parse_playlist(vid.get("/live/reload/index.m3u8").text)["segments"][-1]["uri"]
        wait_for(lambda: parse_playlist(vid.get("/live/reload/index.m3u8").text)["segments"][-1]["uri"] != last,
                 6, what="playlist to advance after reload")
    finally:
        out = pub.communicate(timeout=60)[1]
    assert pub.returncode == 0, out


def test_http_surface(vid):
    assert vid.get("/live/nope/index.m3u8").status == 404
    assert vid.get("/live/nope/0.m4s").status == 404
    assert vid.get("/live/../index.m3u8").status in (400, 404)
    pub = publish(vid.rtmp_url("surf"), seconds=8)
    try:
        wait_playlist(vid, "surf", 1)
        assert vid.get("/live/surf/index.m3u8", method="POST").status == 405
        head = vid.get("/live/surf/index.m3u8", method="HEAD")
        assert head.status == 200 and head.body == b"" and int(head.headers["Content-Length"]) > 0
        assert vid.get("/live/surf/999999.m4s").status == 404
        assert vid.get("/live/surf/whatever.txt").status == 404
        gz = vid.get("/live/surf/index.m3u8", headers={"Accept-Encoding": "gzip"})
        assert gz.headers.get("Content-Encoding") == "gzip"
        import gzip

        assert gzip.decompress(gz.body).startswith(b"#EXTM3U")
        seg = parse_playlist(vid.get("/live/surf/index.m3u8").text)["segments"][0]["uri"]
        r = vid.get(f"/live/surf/{seg}", headers={"Range": "bytes=0-7"})
        assert r.status == 206 and len(r.body) == 8
    finally:
        pub.kill()
        pub.wait()


def test_nginx_t_reports_bad_values(tmp_path):
    from conftest import Vid

    v = Vid()
    try:
        conf = v.prefix / "conf" / "nginx.conf"
        good = conf.read_text()
        for bad, msg in [
            ("hls_live_segment 1s;", None),
            ("hls_live_part 5s;", '"hls_live_part" must be'),
            ("hls_live_window 1;", '"hls_live_window" must be'),
            ("hls_live_segment banana;", "invalid value"),
        ]:
            text = good.replace("hls_live_part 200ms;", bad) if "part" in bad else \
                good.replace("hls_live_window 6;", bad) if "window" in bad else \
                good.replace("hls_live_segment 1s;", bad)
            conf.write_text(text)
            r = v.nginx("-t", check=False)
            if msg is None:
                assert r.returncode == 0, r.stderr
            else:
                assert r.returncode != 0 and msg in r.stderr, r.stderr
    finally:
        v.cleanup()
