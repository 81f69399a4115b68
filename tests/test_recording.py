"""Recordings: a published broadcast is kept as a self-contained VOD folder that real
players (ffprobe, ffmpeg's HLS demuxer, hls.js in Chromium) play, that a stock nginx
(Debian's, without vid) serves, and that the SQL catalog lists; retention removes old
ones.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import DEBIAN_FFMPEG, ROOT, ffprobe_json, free_port, http, parse_playlist, publish, wait_for
from test_player import browser, run_play  # noqa: F401  (browser is a fixture)

STOCK_NGINX = "/usr/sbin/nginx"
SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
PUBLISH_S = 60


def rec_root(vid):
    return vid.prefix / "media" / ".recordings"


def recordings(vid, key):
    d = rec_root(vid) / key
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def sql(db, query):
    out = subprocess.run([SQLITE3, "-json", str(db), query], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout or "[]")


class StockNginx:
    """Debian's nginx with nginx-conf/recordings.conf, serving a recordings folder."""

    def __init__(self, root):
        if not os.access(STOCK_NGINX, os.X_OK):
            pytest.skip(f"{STOCK_NGINX} not found (scripts/deps.sh test installs Debian's nginx)")
        self.prefix = Path(tempfile.mkdtemp(prefix="vid-stock-"))
        (self.prefix / "logs").mkdir()
        self.port = free_port()
        conf = (ROOT / "nginx-conf" / "recordings.conf").read_text()
        assert "alias /var/lib/vid/.recordings/;" in conf and "listen 127.0.0.1:8081;" in conf
        conf = conf.replace("/var/lib/vid/.recordings/", f"{root}/").replace("127.0.0.1:8081", f"127.0.0.1:{self.port}")
        assert "load_module" not in conf
        (self.prefix / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen([STOCK_NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
                                      "-e", str(self.prefix / "logs" / "error.log"), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def up():
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, 10, what="stock nginx")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.prefix, ignore_errors=True)


def total_duration(playlist_text):
    return sum(float(m) for m in re.findall(r"#EXTINF:([0-9.]+),", playlist_text))


def test_recording_vod_players_stock_nginx_and_catalog(vid_factory, browser, m3u8):  # noqa: F811
    vid = vid_factory(segment="2s", window=6, stream_extra="hls_live_record on;")
    pub = publish(vid.rtmp_url("show"), seconds=PUBLISH_S, size="320x240")
    t0 = time.monotonic()
    try:
        # While live: an EVENT playlist that grows; vid's own /recordings/ serves it.
        wait_for(lambda: recordings(vid, "show") and (recordings(vid, "show")[0] / "index.m3u8").exists()
                 and total_duration((recordings(vid, "show")[0] / "index.m3u8").read_text()) >= 4,
                 30, step=0.3, what="a recording with 2 segments")
        rec = recordings(vid, "show")[0]
        live_text = (rec / "index.m3u8").read_text()
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in live_text and "#EXT-X-ENDLIST" not in live_text, live_text
        url = f"/recordings/show/{rec.name}/index.m3u8"
        r = vid.get(url)
        assert r.status == 200 and r.headers["Content-Type"] == "application/vnd.apple.mpegurl", (r.status, r.headers)
        # Hard links, not copies: a segment still in the live window shares its inode.
        seg = parse_playlist(live_text)["segments"][-1]["uri"]
        live_seg = vid.prefix / "media" / "show" / seg
        if live_seg.exists():
            assert os.stat(live_seg).st_ino == os.stat(rec / seg).st_ino
        # The JSON API lists it, live.
        j = json.loads(vid.get("/recordings.json?key=show").body)
        assert j["total"] == 1 and j["recordings"][0]["live"] is True and j["recordings"][0]["url"] == url, j
        # The catalog lists the session while it is live.
        db = vid.prefix / "media" / "catalog.sqlite"
        wait_for(lambda: db.exists() and sql(db, "SELECT id FROM sessions WHERE key = 'show'"), 20, what="live row")
        assert pub.wait(PUBLISH_S + 60) == 0, pub.stderr.read().decode()
    finally:
        if pub.poll() is None:
            pub.kill()
    published = time.monotonic() - t0  # >= PUBLISH_S: ffmpeg -re -t 60

    wait_for(lambda: "#EXT-X-ENDLIST" in (rec / "index.m3u8").read_text(), 20, what="the VOD playlist")
    vod = (rec / "index.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in vod
    td = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", vod).group(1))
    assert abs(total_duration(vod) - PUBLISH_S) <= td, (total_duration(vod), vod)
    parsed = m3u8(vod)
    assert parsed["playlistType"] == "VOD" and parsed["endList"] is True
    uris = [s["uri"] for s in parsed["segments"]]
    assert len(uris) >= PUBLISH_S // 2 - 1
    # Every listed file is in the folder, though the live sweeper removed the early ones.
    for u in uris:
        assert (rec / u).is_file(), u
    assert not (vid.prefix / "media" / "show" / uris[0]).exists(), "the live window moved on"
    assert (rec / parsed["segments"][0]["map"]["uri"]).is_file()

    # ffprobe and ffmpeg's HLS demuxer: the published duration (± one segment), A+V.
    probe = ffprobe_json(rec / "index.m3u8", "-show_format", "-show_streams")
    kinds = sorted(s["codec_type"] for s in probe["streams"])
    assert kinds == ["audio", "video"], kinds
    assert abs(float(probe["format"]["duration"]) - PUBLISH_S) <= td, probe["format"]
    out_mp4 = vid.prefix / "out.mp4"
    r = subprocess.run([DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(rec / "index.m3u8"),
                        "-c", "copy", "-y", str(out_mp4)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    mp4 = ffprobe_json(out_mp4, "-show_format", "-show_streams")
    assert sorted(s["codec_type"] for s in mp4["streams"]) == ["audio", "video"]
    assert abs(float(mp4["format"]["duration"]) - PUBLISH_S) <= td, mp4["format"]

    # The catalog: one finished session, with what a user needs to find and replay it.
    def ended_row():
        rows = sql(db, "SELECT * FROM sessions WHERE key = 'show'")
        return rows if rows and rows[0]["ended_ms"] else None

    rows = wait_for(ended_row, 20, what="the finished row")
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["id"] == f"show/{rec.name}" and row["recorded"] == 1
    assert row["url"] == url and row["path"] == str(rec)
    assert row["segments"] == len(uris)
    assert abs(row["duration_ms"] / 1000 - PUBLISH_S) <= td
    assert row["bytes"] == sum((rec / u).stat().st_size for u in uris)
    assert row["video_codec"].startswith("avc1.") and row["audio_codec"] == "mp4a.40.2"
    assert (row["width"], row["height"]) == (320, 240) and 29 <= row["frame_rate"] <= 31
    assert 0 < row["avg_bitrate"] <= row["peak_bitrate"]
    assert row["ended_ms"] - row["started_ms"] >= (PUBLISH_S - td) * 1000
    assert row["started_at"].endswith("Z") and row["ended_at"] > row["started_at"]
    stream = sql(db, "SELECT * FROM streams WHERE key = 'show'")
    assert stream and stream[0]["last_session"] == row["id"] and stream[0]["height"] == 240
    assert sql(db, "SELECT MAX(version) AS v FROM vid_schema")[0]["v"] >= 1
    assert sql(db, "SELECT COUNT(*) AS n FROM recordings")[0]["n"] == 1

    # The JSON API: filters, paging, the VOD URL.
    j = json.loads(vid.get("/recordings.json").body)
    assert j["total"] == 1 and j["next_offset"] is None, j
    entry = j["recordings"][0]
    assert (entry["key"], entry["url"], entry["live"], entry["segments"]) == ("show", url, False, len(uris)), entry
    assert entry["started_ms"] == row["started_ms"] and entry["ended_ms"] == row["ended_ms"]
    assert json.loads(vid.get("/recordings.json?key=other").body)["total"] == 0
    since = urllib.parse.quote(row["started_at"][:19] + "Z")
    assert json.loads(vid.get(f"/recordings.json?since={row['started_ms'] - 5000}&until={row['started_ms'] + 5000}").body)["total"] == 1
    assert json.loads(vid.get(f"/recordings.json?since={row['started_ms'] + 5000}").body)["total"] == 0
    assert vid.get(f"/recordings.json?until={since}").status == 200
    assert vid.get("/recordings.json?limit=0").status == 400
    assert vid.get("/recordings.json?key=../etc").status == 400

    # The player page lists the past broadcast with a link that plays it.
    out, err = run_play(browser, vid.url("/"), "--list-recording", "show", timeout=120)
    assert out["list"][0][0] == "show" and out["list"][0][2] in ("1:00", "0:59", "1:01", "1:02", "0:58"), out["list"]
    assert any(urllib.parse.quote(url, safe="") in link for link in out["links"]), out["links"]

    # A stock nginx (Debian's, no vid) serves the folder; ffmpeg plays it over HTTP.
    stock = StockNginx(rec_root(vid))
    try:
        r = http(stock.url(url))
        assert r.status == 200 and r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert r.body == vod.encode()
        r = http(stock.url(f"/recordings/show/{rec.name}/{uris[3]}"))
        assert r.status == 200 and r.headers["Content-Type"] == "video/iso.segment"
        assert r.body == (rec / uris[3]).read_bytes()
        probe = ffprobe_json(stock.url(url), "-show_format", "-show_streams")
        assert abs(float(probe["format"]["duration"]) - PUBLISH_S) <= td
        r = subprocess.run([DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error", "-i", stock.url(url),
                            "-map", "0", "-f", "null", "-"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr

        # hls.js (the player page, ?src=) plays the VOD from the stock server and seeks
        # to the middle.
        page = vid.url("/?src=" + urllib.parse.quote(stock.url(url), safe=""))
        out, err = run_play(browser, page, "--seconds", "10",
                            "--at", "2:document.querySelector('video').currentTime = 30",
                            "--at", "8:document.querySelector('video').currentTime",
                            timeout=180)
        acts = out["actions"]
        assert len(acts) == 2 and not any(a.get("error") for a in acts), (acts, err[-2000:])
        assert 30 < float(acts[1]["result"]) < 40, acts
        assert not out["stats"]["fatalErrors"], out["stats"]
    finally:
        stock.stop()
    assert published >= PUBLISH_S


def test_retention_removes_old_recording_only(vid_factory):
    """Age-based retention: a recording that ended long enough ago loses its playlist and
    catalog row at once and its folder after its duration; newer ones stay."""
    vid = vid_factory(segment="1s", window=6,
                      stream_extra="hls_live_record on; hls_live_record_max_age 20s;")
    db = vid.prefix / "media" / "catalog.sqlite"
    old = publish(vid.rtmp_url("old"), seconds=3, size="160x120")
    assert old.wait(60) == 0
    wait_for(lambda: db.exists() and sql(db, "SELECT id FROM sessions WHERE key = 'old' AND ended_ms IS NOT NULL"),
             20, what="old's row")
    old_rec = recordings(vid, "old")[0]
    ended = time.monotonic()
    # A newer recording, published while the old one ages.
    new = publish(vid.rtmp_url("new"), seconds=8, size="160x120")
    assert new.wait(60) == 0
    wait_for(lambda: sql(db, "SELECT id FROM sessions WHERE key = 'new' AND ended_ms IS NOT NULL"), 20, what="new's row")
    new_rec = recordings(vid, "new")[0]
    assert (old_rec / "index.m3u8").exists(), "not expired yet"
    # Paging through the JSON list, newest first.
    j = json.loads(vid.get("/recordings.json?limit=1").body)
    assert j["total"] == 2 and j["next_offset"] == 1 and j["recordings"][0]["key"] == "new", j
    j = json.loads(vid.get("/recordings.json?limit=1&offset=1").body)
    assert j["next_offset"] is None and j["recordings"][0]["key"] == "old", j

    wait_for(lambda: not (old_rec / "index.m3u8").exists(), 40, step=0.3, what="old's playlist withdrawn")
    assert time.monotonic() - ended >= 19, "withdrawn too early"
    wait_for(lambda: not sql(db, "SELECT id FROM sessions WHERE key = 'old'"), 20, what="old's row gone")
    # Its media stay for the playlist's duration (a player may be playing it), then go.
    wait_for(lambda: not old_rec.exists(), 30, step=0.3, what="old's folder removed")
    assert (new_rec / "index.m3u8").exists() and "#EXT-X-ENDLIST" in (new_rec / "index.m3u8").read_text()
    assert len(list(new_rec.glob("*.m4s"))) >= 4
    assert [r["key"] for r in sql(db, "SELECT key FROM sessions")] == ["new"]
    assert [r["key"] for r in json.loads(vid.get("/recordings.json").body)["recordings"]] == ["new"]
    assert "retention: recording \"old/" in vid.log()


def test_republish_within_grace_continues_the_recording(vid_factory):
    """An encoder whose connection is lost (killed: no unpublish) and that publishes again
    within hls_live_grace continues one recording, with a DISCONTINUITY, not two; the
    finished recording is a VOD that ffmpeg plays through the discontinuity, and the
    catalog has one session for it."""
    vid = vid_factory(segment="1s", window=6, stream_extra="hls_live_record on; hls_live_grace 15s;")
    db = vid.prefix / "media" / "catalog.sqlite"
    first = publish(vid.rtmp_url("cont"), seconds=120, size="160x120")
    try:
        wait_for(lambda: recordings(vid, "cont") and (recordings(vid, "cont")[0] / "index.m3u8").exists()
                 and total_duration((recordings(vid, "cont")[0] / "index.m3u8").read_text()) >= 3,
                 30, step=0.3, what="3 s recorded")
    finally:
        first.kill()
        first.wait()
    wait_for(lambda: "connection lost" in vid.log(), 15, what="the lost connection noticed")
    before = total_duration((recordings(vid, "cont")[0] / "index.m3u8").read_text())
    second = publish(vid.rtmp_url("cont"), seconds=4, size="160x120")
    assert second.wait(60) == 0, second.stderr.read().decode()
    recs = recordings(vid, "cont")
    assert len(recs) == 1, recs
    pl = recs[0] / "index.m3u8"
    wait_for(lambda: "#EXT-X-ENDLIST" in pl.read_text(), 20, what="the VOD playlist")
    text = pl.read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.count("#EXT-X-DISCONTINUITY") == 1, text
    assert total_duration(text) >= before + 3, (before, text)
    assert "continues the previous stream" in vid.log()
    r = subprocess.run([DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(pl), "-f", "null", "-"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: db.exists() and sql(db, "SELECT id FROM sessions WHERE key = 'cont' AND ended_ms IS NOT NULL"
                                             " AND discontinuities = 1"), 20, what="the session row")
    rows = sql(db, "SELECT id, segments FROM sessions WHERE key = 'cont'")
    assert len(rows) == 1 and rows[0]["segments"] == text.count(".m4s"), (rows, text)


def test_dvr_window_delta_updates_and_back_to_live(vid_factory, browser, m3u8):  # noqa: F811
    """hls_live_dvr: a live broadcast seekable back to its start (longer than the live
    window), delta updates with _HLS_skip=YES; the player page seeks back and returns to
    live with its button."""
    vid = vid_factory(segment="1s", window=6, stream_extra="hls_live_record on;")
    pub = publish(vid.rtmp_url("dvr"), seconds=45, size="320x240")
    try:
        def dvr_segments():
            r = vid.get("/dvr/dvr/index.m3u8")
            return r.status == 200 and len(parse_playlist(r.text)["segments"]) >= 14 and r

        r = wait_for(dvr_segments, 40, step=0.5, what="a 14 s DVR window")
        assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        full = m3u8(r.text)
        assert full["playlistType"] == "EVENT" and not full.get("endList")
        assert full["serverControl"]["canSkipUntil"] == 6
        live = parse_playlist(vid.get("/live/dvr/index.m3u8").text)["segments"]
        assert len(full["segments"]) > len(live) + 4, "the DVR window reaches back further than the live one"
        rec = recordings(vid, "dvr")[0]
        assert full["segments"][0]["uri"] == f"/recordings/dvr/{rec.name}/" + parse_playlist(
            (rec / "index.m3u8").read_text())["segments"][0]["uri"]
        assert vid.get(full["segments"][0]["uri"]).status == 200
        delta_text = vid.get("/dvr/dvr/index.m3u8?_HLS_skip=YES").text
        delta = m3u8(delta_text)
        skipped = delta["skip"]["skippedSegments"]
        assert skipped > 0 and len(delta_text) < len(r.text)
        assert skipped + len(delta["segments"]) >= len(full["segments"])
        assert vid.get("/dvr/nobody/index.m3u8").status == 404
        assert vid.get("/dvr/../index.m3u8").status == 404

        # The page: seek back to the start, "back to live" appears; clicking it returns.
        src = urllib.parse.quote(vid.url("/dvr/dvr/index.m3u8"), safe="")
        out, err = run_play(browser, vid.url(f"/?src={src}&key=dvr"), "--seconds", "12",
                            "--at", "2:document.querySelector('video').currentTime = 1",
                            "--at", "5:document.getElementById('to-live').hidden",
                            "--at", "6:document.getElementById('to-live').click()",
                            "--at", "10:document.getElementById('to-live').hidden",
                            timeout=180)
        acts = out["actions"]
        assert len(acts) == 4 and not any(a.get("error") for a in acts), (acts, err[-2000:])
        assert acts[1]["result"] is False and acts[1]["currentTime"] < 8, acts
        assert acts[3]["result"] is True and acts[3]["currentTime"] > acts[1]["currentTime"] + 8, acts
    finally:
        pub.kill()
