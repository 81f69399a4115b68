"""WHIP ingest (RFC 9725): a real WebRTC publisher (ffmpeg 9's `whip` muxer: ICE, DTLS-SRTP,
RTP/RTCP) goes live through nginx + vid; what comes out is checked with ffprobe and played
with ffmpeg's HLS demuxer."""

import json
import random
import re
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from test_player import browser  # noqa: F401 (fixture: node + playwright-core + Chromium)
from test_auth import callback_server  # noqa: F401 (fixture: a real HTTP publish-callback service)
from conftest import FFPROBE, http, modern_ffmpeg, parse_playlist, publish, wait_for

GOLIVE_JS = Path(__file__).resolve().parent / "tools" / "golive.js"
SESSION_LINE = re.compile(r'whip: "([\w-]+)": session (\S+) answered, media on UDP 127\.0\.0\.1:(\d+)')


def whip_publish(url, seconds=12, audio=True, extra=(), token=None):
    """ffmpeg 9 publishing H.264 (constrained baseline, no B-frames, as browsers send) and
    Opus over WHIP."""
    ff = modern_ffmpeg()
    cmd = [ff, "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast",
            "-tune", "zerolatency", "-bf", "0", "-g", "30", "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "libopus", "-b:a", "64k", "-ar", "48000", "-ac", "2"]
    if token:
        cmd += ["-authorization", token]
    cmd += list(extra) + ["-f", "whip", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def live_playlist(v, key, segments=2, timeout=20):
    def ready():
        r = v.get(f"/live/{key}/index.m3u8")
        if r.status != 200:
            return None
        pl = parse_playlist(r.text)
        return pl if len(pl["segments"]) >= segments else None
    return wait_for(ready, timeout, what=f"{segments} segments of {key}")


def probe(path):
    out = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


def test_ffmpeg_whip_publish_becomes_h264_and_opus_llhls(vid_factory, tmp_path):
    v = vid_factory()
    pub = whip_publish(v.url("/whip/demo"), seconds=14)
    try:
        pl = live_playlist(v, "demo", segments=3)
        text = v.get("/live/demo/index.m3u8").text
        assert "#EXT-X-PART:" in text and "#EXT-X-PRELOAD-HINT" in text
        master = v.get("/live/demo/master.m3u8").text
        assert re.search(r'CODECS="avc1\.42[0-9a-f]{4},opus"', master), master
        init = tmp_path / "init.mp4"
        init.write_bytes(v.get(f"/live/demo/{pl['segments'][0]['map']}").body)
        seg = tmp_path / "seg.mp4"
        seg.write_bytes(init.read_bytes() + v.get(f"/live/demo/{pl['segments'][1]['uri']}").body)
        s = probe(seg)
        assert s["video"]["codec_name"] == "h264" and s["video"]["width"] == 640
        assert s["audio"]["codec_name"] == "opus" and int(s["audio"]["sample_rate"]) == 48000
        # Segments follow the target although a WebRTC encoder sends keyframes only when
        # asked: vid asks (PLI) at the segment cadence.
        durations = [seg["dur"] for seg in pl["segments"][1:]]
        assert all(0.9 <= d <= 1.5 for d in durations), durations
        # ffmpeg's HLS demuxer plays the live stream: both tracks decode.
        play = subprocess.run([modern_ffmpeg(), "-v", "error", "-i", v.url("/live/demo/index.m3u8"),
                               "-t", "4", "-f", "null", "-"], capture_output=True, text=True, timeout=60)
        assert play.returncode == 0, play.stderr[-2000:]
        # Session line: which worker's port took the media.
        assert SESSION_LINE.search(v.log()), v.log()[-3000:]
        # The publisher ends with DELETE: the stream ends at once (no grace period).
        pub.wait(timeout=30)
        wait_for(lambda: "#EXT-X-ENDLIST" in v.get("/live/demo/index.m3u8").text, 5, what="ENDLIST")
        assert "ended by the publisher" in v.log()
        # The SQL catalog has the session and the stream's codecs, as for RTMP.
        db = v.prefix / "media" / "catalog.sqlite"

        def catalog_row():
            out = subprocess.run(["sqlite3", str(db), "SELECT s.ended_ms IS NOT NULL, s.segments > 0, st.video_codec, "
                                  "st.audio_codec FROM sessions s JOIN streams st ON st.key = s.key "
                                  "WHERE s.key = 'demo'"], capture_output=True, text=True)
            return out.stdout.strip() if out.returncode == 0 and out.stdout.startswith("1|1|") else None
        row = wait_for(catalog_row, 10, what="catalog row")
        assert row.endswith("|opus") and "|avc1.42" in row, row
        metrics = v.get("/metrics").text
        for line in ("vid_whip_sessions_total 1", 'vid_whip_sessions_closed_total{reason="ended"} 1',
                     "vid_whip_sessions 0", "vid_whip_refusals_total 0"):
            assert line in metrics.splitlines(), (line, [l for l in metrics.splitlines() if "whip" in l])
    finally:
        pub.kill()
        pub.wait()


def test_sessions_on_several_workers_each_get_their_workers_port(vid_factory):
    v = vid_factory(workers=2)
    pubs, ports, keys = [], set(), []
    try:
        for i in range(8):
            key = f"w{i}"
            keys.append(key)
            pubs.append(whip_publish(v.url(f"/whip/{key}"), seconds=10, audio=False))
            time.sleep(0.3)
            ports = {m.group(3) for m in SESSION_LINE.finditer(v.log())}
            if len(ports) == 2 and i >= 2:
                break
        assert ports == {str(v.whip_port), str(v.whip_port + 1)}, ports
        for key in keys:
            live_playlist(v, key, segments=2)
    finally:
        for p in pubs:
            p.kill()
            p.wait()


OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
    "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=rtcp-fb:96 nack pli\r\na=ssrc:1111 cname:x\r\n"
)


def stun_binding_request(username, password):
    """An ICE connectivity check (RFC 8445 7.2.2): USERNAME, PRIORITY, ICE-CONTROLLING,
    USE-CANDIDATE, MESSAGE-INTEGRITY (HMAC-SHA1 keyed with the peer's ice-pwd), FINGERPRINT."""
    import hashlib
    import hmac
    import os
    import struct
    import zlib

    def attr(t, v):
        return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)

    tid = os.urandom(12)
    body = (attr(0x0006, username.encode()) + attr(0x0024, struct.pack("!I", 0x6E7F1EFF))
            + attr(0x802A, os.urandom(8)) + attr(0x0025, b""))
    header = lambda extra: struct.pack("!HHI", 0x0001, len(body) + extra, 0x2112A442) + tid
    mi = hmac.new(password.encode(), header(24) + body, hashlib.sha1).digest()
    body += attr(0x0008, mi)
    crc = (zlib.crc32(header(8) + body) ^ 0x5354554E) & 0xFFFFFFFF
    body += attr(0x8028, struct.pack("!I", crc))
    return header(0) + body


def post(v, key, body, ctype="application/sdp", headers=None):
    return http(v.url(f"/whip/{key}"), method="POST",
                headers={"Content-Type": ctype, **(headers or {})}, body=body)


def test_bad_offers_get_clear_4xx_and_log_lines(vid_factory):
    v = vid_factory(stream_extra="rtmp_live_takeover off;")
    assert post(v, "k", b"hello", ctype="text/plain").status == 415
    r = post(v, "k", b"hello")
    assert r.status == 400 and "malformed SDP" in r.text, r.text
    r = post(v, "k", OFFER[: len(OFFER) // 2].encode())
    assert r.status in (400, 406), r.text
    vp8 = OFFER.replace("H264/90000", "VP8/90000")
    r = post(v, "k", vp8.encode())
    assert r.status == 406 and "H.264" in r.text, r.text
    r = post(v, "bad.key%21", OFFER.encode())
    assert r.status == 400 and "invalid stream key" in r.text, r.text
    assert post(v, "k", b"v=0\r\n" + b"a=x\r\n" * 20000).status == 413
    assert http(v.url("/whip/k"), method="GET").status == 405
    # A key that is already live (takeover off): 409.
    rtmp = publish(v.rtmp_url("taken"), seconds=15)
    try:
        live_playlist(v, "taken", segments=1)
        r = post(v, "taken", OFFER.encode())
        assert r.status == 409 and "already being published" in r.text, r.text
    finally:
        rtmp.kill()
        rtmp.wait()
    # A valid offer whose publisher never does ICE/DTLS: the session is dropped after the
    # handshake timeout, the stream it claimed ends.
    r = post(v, "ghost", OFFER.encode())
    assert r.status == 201, r.text
    assert r.headers["Content-Type"].startswith("application/sdp")
    assert "a=ice-lite" in r.text and f"127.0.0.1 {v.whip_port}" in r.text
    loc = r.headers["Location"]
    assert loc.startswith("/whip/ghost/w0-")
    # The publisher does ICE (a STUN binding request with the answer's credentials, which
    # the server answers) but never starts DTLS.
    ufrag = re.search(r"a=ice-ufrag:(\S+)", r.text).group(1)
    pwd = re.search(r"a=ice-pwd:(\S+)", r.text).group(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(stun_binding_request(f"{ufrag}:abcd", pwd), ("127.0.0.1", v.whip_port))
        reply, _ = s.recvfrom(2048)
        assert reply[:2] == b"\x01\x01", reply[:4].hex()  # Binding success response
    wait_for(lambda: "handshake did not complete" in v.log(), 15, what="handshake timeout")
    # DELETE of a session that just ended: 200; of one that never was: 404.
    assert http(v.url(loc), method="DELETE").status == 200
    assert http(v.url("/whip/ghost/w0-" + "0" * 32), method="DELETE").status == 404
    assert http(v.url("/whip/ghost/nonsense"), method="DELETE").status == 404
    log = v.log()
    assert "offer is not application/sdp" in log and "unsupported offer" in log


def test_garbage_datagrams_do_not_hurt_a_live_whip_stream(vid_factory):
    v = vid_factory()
    pub = whip_publish(v.url("/whip/noisy"), seconds=12)
    try:
        live_playlist(v, "noisy", segments=1)
        rnd = random.Random(7)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(3000):
                n = rnd.choice([0, 1, 12, 100, 1200, 1500, 3000])
                # Random bytes, some shaped like RTP (0x80), STUN (0x00) or DTLS (0x16).
                first = rnd.choice([0x80, 0x00, 0x16, rnd.randrange(256)])
                s.sendto(bytes([first]) + rnd.randbytes(max(n - 1, 0)), ("127.0.0.1", v.whip_port))
        before = len(live_playlist(v, "noisy", segments=1)["segments"])
        msn = parse_playlist(v.get("/live/noisy/index.m3u8").text)["msn"]
        time.sleep(3)
        pl = parse_playlist(v.get("/live/noisy/index.m3u8").text)
        assert pl["msn"] + len(pl["segments"]) > msn + before, "stream stopped"
        # Logged at most once a minute, not per datagram; counted.
        assert v.log().count("belongs to no session") <= 1
        strays = [l for l in v.get("/metrics").text.splitlines() if l.startswith("vid_whip_stray_datagrams_total ")]
        assert strays and int(strays[0].split()[1]) >= 1000, strays
        assert "vid_whip_sessions 1" in v.get("/metrics").text.splitlines()
    finally:
        pub.kill()
        pub.wait()


class LossyRelay:
    """A loopback UDP relay that drops a share of the publisher's datagrams, plus an HTTP
    front that rewrites the answer's candidate to the relay."""

    def __init__(self, v, loss=0.02, seed=1):
        self.v, self.loss, self.rnd = v, loss, random.Random(seed)
        self.pub_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.pub_side.bind(("127.0.0.1", 0))
        self.srv_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.srv_side.bind(("127.0.0.1", 0))
        self.port = self.pub_side.getsockname()[1]
        self.client = None
        self.target = None
        self.dropped = self.passed = 0
        self.stop = False
        threading.Thread(target=self._up, daemon=True).start()
        threading.Thread(target=self._down, daemon=True).start()

    def _up(self):
        self.pub_side.settimeout(0.2)
        while not self.stop:
            try:
                d, a = self.pub_side.recvfrom(4096)
            except socket.timeout:
                continue
            self.client = a
            if self.target is None:
                continue
            # STUN (first byte 0/1) always passes: the loss is on the media.
            if d[0] > 3 and self.rnd.random() < self.loss:
                self.dropped += 1
                continue
            self.passed += 1
            self.srv_side.sendto(d, self.target)

    def _down(self):
        self.srv_side.settimeout(0.2)
        while not self.stop:
            try:
                d, _ = self.srv_side.recvfrom(4096)
            except socket.timeout:
                continue
            if self.client:
                self.pub_side.sendto(d, self.client)

    def offer(self, key, sdp):
        req = urllib.request.Request(self.v.url(f"/whip/{key}"), data=sdp, method="POST",
                                     headers={"Content-Type": "application/sdp"})
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = r.read().decode()
            loc = r.headers["Location"]
        m = re.search(r"127\.0\.0\.1 (\d+) typ host", answer)
        self.target = ("127.0.0.1", int(m.group(1)))
        return answer.replace(f"127.0.0.1 {m.group(1)} typ host", f"127.0.0.1 {self.port} typ host"), loc


def test_two_percent_packet_loss_keeps_the_stream_going(vid_factory, browser):
    import http.server
    v = vid_factory()
    relay = LossyRelay(v, loss=0.02)

    class Front(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            key = self.path.rsplit("/", 1)[-1]
            answer, loc = relay.offer(key, body)
            self.send_response(201)
            self.send_header("Content-Type", "application/sdp")
            self.send_header("Location", loc)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def do_DELETE(self):
            r = http(v.url(self.path), method="DELETE")
            self.send_response(r.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    pub = whip_publish(f"http://127.0.0.1:{front.server_address[1]}/whip/lossy", seconds=28)
    try:
        pl = live_playlist(v, "lossy", segments=4, timeout=25)
        assert relay.dropped > 20, (relay.dropped, relay.passed)
        # Every segment is still about one target long: lost keyframes were asked for again.
        assert all(s["dur"] <= 1.5 for s in pl["segments"]), pl["segments"]
        play = subprocess.run([modern_ffmpeg(), "-v", "error", "-i", v.url("/live/lossy/index.m3u8"),
                               "-t", "3", "-f", "null", "-"], capture_output=True, text=True, timeout=60)
        assert play.returncode == 0, play.stderr[-2000:]
        # hls.js plays it through the loss without a fatal error.
        from test_player import run_play
        out, _ = run_play(browser, v.url("/?key=lossy"), "--seconds", "6", timeout=120)
        stats = out.get("stats") or {}
        assert not out.get("error") and stats.get("fatalErrors") == 0, (out.get("error"), stats.get("errors"))
        assert stats["currentTime"] - out["samples"][0]["currentTime"] >= 3
        pub.wait(timeout=40)
        wait_for(lambda: "keyframe requests" in v.log(), 5, what="session summary")
        m = re.search(r"(\d+) keyframe requests, (\d+) gaps", v.log())
        assert m and int(m.group(1)) >= 4, v.log()[-2000:]
    finally:
        relay.stop = True
        front.shutdown()
        pub.kill()
        pub.wait()


def test_browser_goes_live_from_the_player_page_and_hlsjs_plays_it(vid_factory, browser, tmp_path):
    """Chromium with a fake camera publishes from the page's "Go live" (WHIP); hls.js in a
    second browser plays the stream; the publisher's Stop ends it at once (DELETE)."""
    from test_player import CHROMIUM, STARTUP_TIMEOUT, read_png, region_colours, run_play
    v = vid_factory(segment="2s", part="200ms", window=12)
    node = browser
    golive = subprocess.Popen([node, str(GOLIVE_JS), "--url", v.url("/"), "--key", "cam", "--seconds", "35",
                               "--chromium", CHROMIUM], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shot = tmp_path / "player.png"
    try:
        live_playlist(v, "cam", segments=2, timeout=40)
        out, _ = run_play(node, v.url("/?key=cam"), "--seconds", "15", "--screenshot", str(shot),
                          timeout=STARTUP_TIMEOUT + 15 + 90)
    finally:
        stdout, stderr = golive.communicate(timeout=120)
    pub = json.loads([l for l in stdout.splitlines() if l.startswith("{")][-1])
    assert not pub.get("error") and pub["publish"]["state"] == "live", (pub, stderr[-2000:])
    assert "H264" in pub["publish"]["codecs"] and "opus" in pub["publish"]["codecs"], pub["publish"]
    stats = out.get("stats") or {}
    assert not out.get("error"), out.get("error")
    assert stats["engine"].startswith("hls.js") and stats["fatalErrors"] == 0, stats.get("errors")
    advanced = stats["currentTime"] - out["samples"][0]["currentTime"]
    assert advanced >= 10, f"currentTime advanced only {advanced:.1f} s"
    # The picture is there: Chromium's fake camera draws a coloured, moving pattern.
    colours, spread = region_colours(read_png(shot), out["videoBox"])
    assert colours >= 8 and spread >= 10, f"video area looks blank: {colours} colours, luma spread {spread:.1f}"
    # Stop: DELETE, the stream ends at once.
    wait_for(lambda: "#EXT-X-ENDLIST" in v.get("/live/cam/index.m3u8").text, 5, what="ENDLIST")
    assert "ended by the publisher" in v.log()


def test_reload_ends_sessions_cleanly_and_the_key_can_be_published_again(vid_factory):
    """nginx -s reload: the old workers close their WHIP sessions (the stream starts its
    grace period), the new workers take the UDP ports, a new WHIP publish continues the
    stream; no worker crashes."""
    v = vid_factory(workers=2, stream_extra="hls_live_grace 10s;")
    first = whip_publish(v.url("/whip/re"), seconds=30, audio=False)
    second = None
    try:
        live_playlist(v, "re", segments=2)
        msn_before = parse_playlist(v.get("/live/re/index.m3u8").text)["msn"]
        v.reload()
        wait_for(lambda: "whip: session of \"re\" closed: worker is exiting" in v.log(), 10,
                 what="old worker closing its session")
        first.kill()
        first.wait()
        second = whip_publish(v.url("/whip/re"), seconds=10, audio=False)
        wait_for(lambda: "continues the previous stream" in v.log(), 10, what="republish")
        # The old stream's last segment was sealed at the close; the new publish's media
        # follow it after a discontinuity.
        text = wait_for(lambda: (t := v.get("/live/re/index.m3u8").text).count("#EXTINF") and
                        "#EXT-X-DISCONTINUITY\n" in t and t.split("#EXT-X-DISCONTINUITY\n")[1].count("#EXTINF") >= 2 and t,
                        15, what="two segments after the discontinuity")
        assert "#EXT-X-ENDLIST" not in text, text
        assert parse_playlist(text)["msn"] >= msn_before
        assert not v.crashes()
    finally:
        for p in (first, second):
            if p:
                p.kill()
                p.wait()


def test_signed_keys_apply_to_whip_through_the_bearer_token(vid_factory):
    """rtmp_live_secret: a WHIP publish needs `Authorization: Bearer exp=…&sig=…` (or the
    signed key); without it, or with a wrong one, 403 and a log line."""
    from test_auth import SECRET_A, signed_key
    v = vid_factory(stream_extra=f"rtmp_live_secret {SECRET_A};")
    exp = int(time.time()) + 600
    assert post(v, "signed", OFFER.encode()).status == 403
    bad = signed_key("signed", exp, "not-the-secret-at-all").split("?")[1]
    r = post(v, "signed", OFFER.encode(), headers={"Authorization": f"Bearer {bad}"})
    assert r.status == 403 and "refused" in r.text, r.text
    other = signed_key("other", exp, SECRET_A).split("?")[1]
    assert post(v, "signed", OFFER.encode(), headers={"Authorization": f"Bearer {other}"}).status == 403
    # ffmpeg's -authorization carries the token; the whole signed key works as well.
    good = signed_key("signed", exp, SECRET_A)
    pub = whip_publish(v.url("/whip/signed"), seconds=8, audio=False, token=good.split("?")[1])
    pub2 = whip_publish(v.url("/whip/signed2"), seconds=8, audio=False, token=signed_key("signed2", exp, SECRET_A))
    try:
        live_playlist(v, "signed", segments=1)
        live_playlist(v, "signed2", segments=1)
    finally:
        for p in (pub, pub2):
            p.kill()
            p.wait()
    assert v.log().count('publish "whip/signed" refused') >= 2


def test_publish_callback_decides_whip_publishes(vid_factory, callback_server):
    """rtmp_live_on_publish applies to WHIP: the POST is held until the service answers.
    Allowed: 201 and live; 403 from the service: 403; a redirect renames the stream; a
    service that is down or too slow: 503. publish_done follows the end of the session.
    A publisher that leaves while its offer is held costs nothing afterwards."""
    from test_auth import cb_conf
    cb = callback_server
    v = vid_factory(stream_extra=cb_conf(cb))
    allow = whip_publish(v.url("/whip/allowW?pass=xyz"), seconds=6, audio=False)
    renamed = whip_publish(v.url("/whip/secretW"), seconds=6, audio=False)
    try:
        live_playlist(v, "allowW", segments=1)
        live_playlist(v, "publicW", segments=1)
        assert v.get("/live/secretW/index.m3u8").status == 404
        assert not (v.prefix / "media" / "secretW").exists()
        r = post(v, "denyW", OFFER.encode())
        assert r.status == 403 and "publish callback answered 403" in r.text, r.text
        t0 = time.monotonic()
        r = post(v, "slowW", OFFER.encode())
        assert r.status == 201 and time.monotonic() - t0 >= 1.9, (r.status, r.text)
        assert "a=ice-lite" in r.text
        # Gone while held: the offer is dropped, the service's late answer ignored.
        with socket.create_connection(("127.0.0.1", v.http_port)) as s:
            body = OFFER.encode()
            s.sendall(b"POST /whip/slowGone HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.5)
        wait_for(lambda: 'whip: "slowGone": the publisher left before the publish callback answered' in v.log(),
                 5, what="the held offer dropped")
        assert allow.wait(30) == 0, allow.stderr.read()
        assert renamed.wait(30) == 0, renamed.stderr.read()
    finally:
        for p in (allow, renamed):
            p.kill()
            p.wait()
    calls = {f["name"]: f for p, f, _ in cb.calls if p == "/publish"}
    f = calls["allowW"]
    assert (f["call"], f["app"], f["addr"], f["pass"]) == ("publish", "whip", "127.0.0.1", "xyz"), f
    assert {"denyW", "secretW", "slowW", "slowGone"} <= set(calls)
    wait_for(lambda: {f["name"] for p, f, _ in cb.calls if p == "/done"} >= {"allowW", "publicW"}, 10,
             what="publish_done calls")
    done = {f["name"]: f for p, f, _ in cb.calls if p == "/done"}
    assert done["allowW"]["call"] == "publish_done" and done["allowW"]["app"] == "whip"
    assert "denyW" not in done and "secretW" not in done and "slowGone" not in done
    time.sleep(2.5)  # the gone publisher's late answer has come and gone
    log = v.log()
    assert 'publish "whip/secretW" renamed to "publicW" by the callback' in log
    assert 'publish "whip/slowGone"' not in log.replace('publish "whip/slowGone" refused', "")
    assert not (v.prefix / "media" / "slowGone").exists()
    metrics = v.get("/metrics").text.splitlines()
    assert "vid_whip_refusals_total 1" in metrics, [l for l in metrics if "whip" in l]

    # A reload while an offer waits for the (2 s) service: the old worker closes its WHIP
    # socket at once, so the late answer gets 503 and nothing stays claimed.
    got = []
    t = threading.Thread(target=lambda: got.append(post(v, "slowReload", OFFER.encode())))
    t.start()
    wait_for(lambda: any(f.get("name") == "slowReload" for p, f, _ in cb.calls), 5, what="the held offer's call")
    v.reload()
    t.join(15)
    assert got and got[0].status == 503, got and (got[0].status, got[0].text)
    wait_for(lambda: 'whip: session of "slowReload" closed: worker is exiting' in v.log(), 5,
             what="the late session ended")
    r = post(v, "slowReload", OFFER.encode())  # the key is free again (2 s service)
    assert r.status == 201, (r.status, r.text)

    # A service that is down, or slower than rtmp_live_callback_timeout: 503 (try again).
    from conftest import free_port
    down = vid_factory(stream_extra=f"rtmp_live_on_publish http://127.0.0.1:{free_port()}/publish;")
    r = post(down, "allowD", OFFER.encode())
    assert r.status == 503 and "publish callback" in r.text, r.text
    slow = vid_factory(stream_extra=cb_conf(cb, timeout="1s"))
    t0 = time.monotonic()
    r = post(slow, "slowT", OFFER.encode())
    assert r.status == 503 and "timed out" in r.text, r.text
    assert 1.0 <= time.monotonic() - t0 < 1.9
