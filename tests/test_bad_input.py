"""Hostile RTMP input against a live origin.

Each attack runs while one well-behaved ffmpeg publisher is live on the same server
(one worker, so attacker and publisher share it). For every case we check:
- the error log names the problem;
- the server closes the attacking connection;
- no worker exits on a signal (worker pids unchanged, no "exited on signal");
- the live stream keeps advancing (its playlist's last segment changes afterwards).

The RTMP client here is written from the spec, independently of src/rtmp: a plain
handshake (C0+C1, S0+S1+S2, C2), chunking with fmt 0/3 headers, a minimal chunk reader
for the server's replies, and a tiny AMF0 encoder/decoder.
"""

import os
import socket
import struct
import subprocess
import time
from contextlib import contextmanager

from pathlib import Path

import pytest

from conftest import DEBIAN_FFMPEG, Vid, parse_playlist, publish, wait_for

TIMEOUT_S = 3  # rtmp_live_timeout of the server under attack


# ---------------------------------------------------------------- AMF0 (tiny)


class Raw(bytes):
    """Bytes that go into a command as they are (a hand-made, possibly hostile, value)."""


def amf(v):
    if isinstance(v, Raw):
        return bytes(v)
    if v is None:
        return b"\x05"
    if isinstance(v, bool):
        return b"\x01" + bytes([v])
    if isinstance(v, (int, float)):
        return b"\x00" + struct.pack(">d", float(v))
    if isinstance(v, str):
        b = v.encode()
        if len(b) > 0xFFFF:
            return b"\x0c" + struct.pack(">I", len(b)) + b
        return b"\x02" + struct.pack(">H", len(b)) + b
    if isinstance(v, dict):
        out = b"\x03"
        for k, x in v.items():
            kb = k.encode()
            out += struct.pack(">H", len(kb)) + kb + amf(x)
        return out + b"\x00\x00\x09"
    raise TypeError(v)


def amf_decode(b, pos=0):
    """One AMF0 value from b[pos:]; returns (value, new pos). Enough for replies."""
    m = b[pos]
    pos += 1
    if m == 0x00:
        return struct.unpack_from(">d", b, pos)[0], pos + 8
    if m == 0x01:
        return bool(b[pos]), pos + 1
    if m == 0x02:
        n = struct.unpack_from(">H", b, pos)[0]
        return b[pos + 2:pos + 2 + n].decode(errors="replace"), pos + 2 + n
    if m == 0x0C:
        n = struct.unpack_from(">I", b, pos)[0]
        return b[pos + 4:pos + 4 + n].decode(errors="replace"), pos + 4 + n
    if m in (0x05, 0x06):
        return None, pos
    if m in (0x03, 0x08):
        if m == 0x08:
            pos += 4  # ECMA array count, not trusted
        obj = {}
        while True:
            n = struct.unpack_from(">H", b, pos)[0]
            pos += 2
            if n == 0 and b[pos] == 0x09:
                return obj, pos + 1
            k = b[pos:pos + n].decode(errors="replace")
            obj[k], pos = amf_decode(b, pos + n)
    raise ValueError(f"AMF0 marker 0x{m:02x} not handled by the test decoder")


def amf_decode_all(b):
    out, pos = [], 0
    while pos < len(b):
        v, pos = amf_decode(b, pos)
        out.append(v)
    return out


# ---------------------------------------------------------------- RTMP client


class Closed(Exception):
    pass


class Rtmp:
    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.rbuf = b""
        self.in_chunk = 128  # the server's chunk size towards us
        self.out_chunk = 128
        self.cs = {}

    # raw I/O
    def send(self, data):
        # The server may close (a limit exceeded) while a large message is still being
        # sent: the reset then shows on the send side; wait_closed reports it.
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True

    def read(self, n):
        while len(self.rbuf) < n:
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                raise Closed()
            self.rbuf += d
        out, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return out

    def wait_closed(self, timeout):
        """True once the server closed the connection (EOF or reset) within timeout."""
        if getattr(self, "reset", False):
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                return False
        return False

    def close(self):
        self.sock.close()

    # handshake
    def handshake(self, send_c2=True):
        c1 = struct.pack(">II", 0, 0) + os.urandom(1528)
        self.send(b"\x03" + c1)
        s0 = self.read(1)
        assert s0 == b"\x03", s0
        s1 = self.read(1536)
        s2 = self.read(1536)
        assert s2[8:] == c1[8:], "S2 echoes C1's random bytes"
        if send_c2:
            self.send(s1)  # C2 echoes S1

    # chunked messages
    def message(self, type_id, payload, stream_id=0, csid=3, ts=0, length=None):
        length = len(payload) if length is None else length
        out = bytes([csid]) + ts.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id])
        out += struct.pack("<I", stream_id)
        for i in range(0, max(len(payload), 1), self.out_chunk):
            if i:
                out += bytes([0xC0 | csid])
            out += payload[i:i + self.out_chunk]
        self.send(out)

    def set_chunk_size(self, n):
        self.message(1, struct.pack(">I", n), csid=2)

    def command(self, name, txn, *args, stream_id=0, csid=3):
        self.message(20, amf(name) + amf(txn) + b"".join(amf(a) for a in args), stream_id=stream_id, csid=csid)

    def read_message(self):
        """One complete message from the server: (type_id, stream_id, payload)."""
        while True:
            b0 = self.read(1)[0]
            fmt, csid = b0 >> 6, b0 & 0x3F
            if csid == 0:
                csid = 64 + self.read(1)[0]
            elif csid == 1:
                x = self.read(2)
                csid = 64 + x[0] + 256 * x[1]
            st = self.cs.setdefault(csid, {"len": 0, "type": 0, "sid": 0, "buf": b""})
            if fmt <= 2:
                ts = int.from_bytes(self.read(3), "big")
                if fmt <= 1:
                    st["len"] = int.from_bytes(self.read(3), "big")
                    st["type"] = self.read(1)[0]
                if fmt == 0:
                    st["sid"] = struct.unpack("<I", self.read(4))[0]
                if ts == 0xFFFFFF:
                    self.read(4)
            n = min(self.in_chunk, st["len"] - len(st["buf"]))
            st["buf"] += self.read(n)
            if len(st["buf"]) >= st["len"]:
                payload, st["buf"] = st["buf"], b""
                if st["type"] == 1:
                    self.in_chunk = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                return st["type"], st["sid"], payload

    def expect_command(self, pred, timeout=5.0):
        """Read until a command message (AMF0) for which pred(values) holds."""
        self.sock.settimeout(timeout)
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            type_id, _sid, payload = self.read_message()
            if type_id == 20:
                values = amf_decode_all(payload)
                seen.append(values[0])
                if pred(values):
                    return values
        raise AssertionError(f"no matching command; saw {seen}")

    # the publisher's dialogue
    def connect(self, app="live"):
        self.command("connect", 1, {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0 (compatible; test)",
                                    "tcUrl": f"rtmp://127.0.0.1/{app}"})
        return self.expect_command(lambda v: v[0] == "_result" and v[1] == 1)

    def create_stream(self):
        self.command("createStream", 2, None)
        v = self.expect_command(lambda v: v[0] == "_result" and v[1] == 2)
        return int(v[3])

    def status(self, timeout=5.0):
        v = self.expect_command(lambda v: v[0] == "onStatus", timeout)
        return v[3]


def session(origin, connect=True):
    c = Rtmp(origin.vid.rtmp_port)
    c.handshake()
    if connect:
        c.connect()
    return c


# ---------------------------------------------------------------- the server under attack


class Origin:
    def __init__(self, vid, pub):
        self.vid = vid
        self.pub = pub

    def last_segment(self):
        r = self.vid.get("/live/steady/index.m3u8")
        assert r.status == 200, r.status
        pl = parse_playlist(r.text)
        assert not pl.get("endlist"), "the live stream ended"
        return pl["segments"][-1]["uri"]


@pytest.fixture(scope="module")
def origin():
    vid = Vid(workers=1, segment="1s", window=6,
              stream_extra=f"rtmp_live_timeout {TIMEOUT_S}s; error_log logs/error.log info;").start()
    pub = publish(vid.rtmp_url("steady"), seconds=600, size="320x240")
    try:
        wait_for(lambda: vid.get("/live/steady/index.m3u8").status == 200, 20, what="the live stream")
        yield Origin(vid, pub)
    finally:
        pub.kill()
        pub.wait()
        vid.stop()
        crashes, log = vid.crashes(), vid.log()
        vid.cleanup()
        assert not crashes, f"worker crashed: {crashes}"
        assert "[alert]" not in log and "[emerg]" not in log, log[-4000:]


@contextmanager
def attack(origin):
    """Runs an attack; yields a function returning the log written since it began.
    Afterwards: same workers, no crash, the publisher still connected, the live stream
    still advancing."""
    vid = origin.vid
    pids = vid.worker_pids()
    mark = len(vid.log())
    before = origin.last_segment()
    yield lambda: vid.log()[mark:]
    new_log = vid.log()[mark:]
    assert "exited on signal" not in new_log, new_log
    assert "[alert]" not in new_log and "[emerg]" not in new_log, new_log
    assert "internal error" not in new_log, "a panic was caught: " + new_log
    assert vid.worker_pids() == pids, "a worker was replaced"
    assert origin.pub.poll() is None, "the live publisher was disconnected: " + origin.pub.stderr.read1().decode()
    wait_for(lambda: origin.last_segment() != before, 2 * 1 + 3, what="the live stream to advance")


def wait_log(log, text, timeout=5):
    return wait_for(lambda: text in log(), timeout, what=f'log line "{text}"')


# ---------------------------------------------------------------- handshake


@pytest.mark.parametrize("garbage", [
    b"\x06" + bytes(1536),                       # RTMPE (encrypted) version byte
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",         # a lost HTTP client
    b"\x00" * 4,
    b"\xff" + os.urandom(3000),
], ids=["rtmpe", "http", "zeros", "random"])
def test_garbage_instead_of_handshake(origin, garbage):
    with attack(origin) as log:
        c = Rtmp(origin.vid.rtmp_port)
        c.send(garbage)
        assert c.wait_closed(3), "connection not closed"
        wait_log(log, f"closing connection: bad handshake version {garbage[0]}")
        c.close()


def test_truncated_input_then_silence_is_timed_out(origin):
    """Three connections stall at different points; the server's timeout closes each."""
    with attack(origin) as log:
        mid_c1 = Rtmp(origin.vid.rtmp_port)
        mid_c1.send(b"\x03" + os.urandom(700))
        no_c2 = Rtmp(origin.vid.rtmp_port)
        no_c2.handshake(send_c2=False)
        mid_msg = session(origin)
        mid_msg.send(b"\x03\x00\x00\x00\x00\x01\x00\x14")  # half a chunk header, then nothing
        t0 = time.monotonic()
        for c in (mid_c1, no_c2, mid_msg):
            assert c.wait_closed(TIMEOUT_S + 4), "stalled connection not closed"
        elapsed = time.monotonic() - t0
        assert TIMEOUT_S - 0.5 < elapsed < TIMEOUT_S + 3, elapsed
        wait_for(lambda: log().count("rtmp: client timed out") >= 3, 3, what="3 timeout log lines")
        for c in (mid_c1, no_c2, mid_msg):
            c.close()


# ---------------------------------------------------------------- chunk layer


@pytest.mark.parametrize("size", [0, 0x80000000, 0xFFFFFFFF])
def test_absurd_set_chunk_size(origin, size):
    with attack(origin) as log:
        c = session(origin, connect=False)
        c.set_chunk_size(size)
        assert c.wait_closed(3), "connection not closed"
        wait_log(log, f"invalid chunk size {size}")
        c.close()


def test_oversized_message_length(origin):
    """A header announcing a 16 MB message is refused before any payload arrives."""
    with attack(origin) as log:
        c = session(origin)
        c.message(9, b"\x17\x01" + bytes(100), stream_id=1, csid=6, length=0xFFFFFF)
        assert c.wait_closed(3), "connection not closed"
        wait_log(log, "message length 16777215 exceeds limit")
        c.close()


def test_many_chunk_streams(origin):
    """Partial messages on ever new chunk stream ids: bounded, then closed."""
    with attack(origin) as log:
        c = session(origin)
        data = b""
        for csid in range(3, 320):
            basic = bytes([0, csid - 64]) if csid >= 64 else bytes([csid])
            data += basic + (0).to_bytes(3, "big") + (1000).to_bytes(3, "big") + b"\x12" + bytes(4) + bytes(128)
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.wait_closed(3), "connection not closed"
        wait_log(log, "more than 64 chunk streams")
        c.close()


def test_fmt3_chunk_on_unknown_stream(origin):
    with attack(origin) as log:
        c = session(origin)
        c.send(b"\xc9" + bytes(200))  # fmt 3 on chunk stream 9, which never had a header
        assert c.wait_closed(3), "connection not closed"
        wait_log(log, "chunk stream 9 starts with a fmt 3 header")
        c.close()


# ---------------------------------------------------------------- AMF / commands


@pytest.mark.parametrize("app,problem", [
    # a long string claiming 4 GB inside a 60-byte message
    (Raw(b"\x0c\xff\xff\xff\xf0" + b"x" * 20), "AMF0 string length 4294967280 exceeds limit"),
    # a real 2 MB long string: before a publish only 64 KiB messages are accepted
    ("a" * (2 << 20), "exceeds limit 65536"),
    # a short string whose length runs past the message
    (Raw(b"\x02\xff\xff" + b"y" * 10), "AMF0 data truncated"),
], ids=["claims-4GB", "2MB", "short-overrun"])
def test_oversized_amf_string_in_connect(origin, app, problem):
    with attack(origin) as log:
        c = Rtmp(origin.vid.rtmp_port)
        c.handshake()
        c.out_chunk = 60000
        c.set_chunk_size(60000)
        c.command("connect", 1, {"app": app, "tcUrl": "rtmp://127.0.0.1/live"})
        assert c.wait_closed(5), "connection not closed"
        wait_log(log, problem)
        assert "closing connection" in log(), log()
        c.close()


def test_commands_before_connect_and_without_app(origin):
    with attack(origin) as log:
        c = session(origin, connect=False)
        c.command("publish", 0, None, "sneaky", "live", stream_id=1)
        assert c.wait_closed(3)
        wait_log(log, 'command "publish" before connect')
        c.close()
        c = session(origin, connect=False)
        c.command("connect", 1, {"flashVer": "x"})
        assert c.wait_closed(3)
        wait_log(log, "connect without app")
        c.close()
    assert not (origin.vid.prefix / "media" / "sneaky").exists()


def prefix_tree(vid):
    """Every path under the server prefix, except the logs and the live stream's media."""
    out = set()
    for p in vid.prefix.rglob("*"):
        rel = p.relative_to(vid.prefix)
        if rel.parts[0] == "logs" or rel.parts[:2] == ("media", "steady"):
            continue
        out.add(str(rel))
    return out


@pytest.mark.parametrize("key", ["../etc", "a/b", "k" * 65, "", "..", "%2e%2e", "key with space", "ключ"],
                         ids=["dotdot-etc", "slash", "65-chars", "empty", "dotdot", "percent", "space", "non-ascii"])
def test_publish_with_bad_key(origin, key):
    tree = prefix_tree(origin.vid)
    with attack(origin) as log:
        c = session(origin)
        sid = c.create_stream()
        c.command("publish", 0, None, key, "live", stream_id=sid, csid=8)
        st = c.status()
        assert st["level"] == "error" and st["code"] == "NetStream.Publish.BadName", st
        assert c.wait_closed(3), "connection not closed"
        wait_log(log, "invalid stream key")
        c.close()
    assert prefix_tree(origin.vid) == tree, "something was created outside the live stream's folder"
    assert not (origin.vid.prefix / "etc").exists()


def test_valid_64_char_key_is_accepted(origin):
    """The boundary next to the 65-char refusal: 64 characters publish fine."""
    key = "K" * 63 + "_"
    with attack(origin):
        c = session(origin)
        sid = c.create_stream()
        c.command("publish", 0, None, key, "live", stream_id=sid, csid=8)
        st = c.status()
        assert st["code"] == "NetStream.Publish.Start", st
        c.close()
    wait_for(lambda: f'publish "live/{key}" ended' in origin.vid.log(), 5, what="publish end")


def test_play_is_refused(origin):
    with attack(origin) as log:
        c = session(origin)
        sid = c.create_stream()
        c.command("play", 0, None, "steady", stream_id=sid, csid=8)
        st = c.status()
        assert st["level"] == "error" and st["code"] == "NetStream.Play.Failed", st
        assert c.wait_closed(3), "connection not closed"
        wait_log(log, "this server only accepts publishers")
        c.close()


def test_garbage_media_after_publish(origin):
    """A publisher that sends a broken AVC sequence header is closed, the stream ends."""
    with attack(origin) as log:
        c = session(origin)
        sid = c.create_stream()
        c.command("publish", 0, None, "junk", "live", stream_id=sid, csid=8)
        assert c.status()["code"] == "NetStream.Publish.Start"
        # avcC with one SPS whose length (65535) is beyond any real one.
        c.message(9, b"\x17\x00\x00\x00\x00" + b"\x01\x64\x00\x1f\xff\xe1\xff\xff" + os.urandom(40),
                  stream_id=sid, csid=6)
        assert c.wait_closed(3), "connection not closed"
        wait_log(log, "malformed")
        wait_log(log, 'publish "live/junk" ended')
        c.close()


# ---------------------------------------------------------------- codecs we do not take


def unsupported_publish(vid, key, vargs, aargs):
    cmd = [DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", "4", *vargs, *aargs, "-f", "flv", vid.rtmp_url(key)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac"]


@pytest.mark.parametrize("vargs,aargs,problem", [
    (["-c:v", "flv"], AAC, "unsupported video codec id 2"),
    (["-c:v", "mpeg4", "-strict", "-1"], AAC, "unsupported video codec id"),
    (H264, ["-c:a", "libmp3lame"], "unsupported audio format 2"),
    (H264, ["-c:a", "pcm_s16le"], "unsupported audio format"),
], ids=["flv1", "mpeg4", "mp3", "pcm"])
def test_unsupported_codec(origin, vargs, aargs, problem):
    key = "codec" + vargs[1] + aargs[1]
    key = "".join(ch for ch in key if ch.isalnum())
    with attack(origin) as log:
        t0 = time.monotonic()
        r = unsupported_publish(origin.vid, key, vargs, aargs)
        wait_log(log, problem)
        assert r.returncode != 0 and time.monotonic() - t0 < 3.5, \
            f"publisher not cut off (rc {r.returncode}): {r.stderr}"
        wait_log(log, f'publish "live/{key}" ended')


# ---------------------------------------------------------------- connection flood


def test_many_stalled_connections(origin):
    """200 clients handshake and stall; the live stream stays live meanwhile; half of
    them vanish (some with a reset), the server times the rest out."""
    n = 200
    with attack(origin) as log:
        conns = []
        for i in range(n):
            c = Rtmp(origin.vid.rtmp_port)
            c.handshake(send_c2=i % 2 == 0)
            conns.append(c)
        t0 = time.monotonic()
        # While they stall: the live stream is served and moves on.
        last = origin.last_segment()
        wait_for(lambda: origin.last_segment() != last, 3, what="live stream to advance during the flood")
        assert origin.vid.get("/live/steady/master.m3u8").status == 200
        # Half go away at once; odd ones abortively (RST).
        for i, c in enumerate(conns[: n // 2]):
            if i % 2:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        rest = conns[n // 2:]
        deadline = t0 + TIMEOUT_S + 5
        open_left = [c for c in rest if not c.wait_closed(max(0.1, deadline - time.monotonic()))]
        assert not open_left, f"{len(open_left)} stalled connections still open"
        for c in rest:
            c.close()
        wait_for(lambda: log().count("rtmp: client timed out") >= len(rest), 5, what="timeout log lines")


# ---------------------------------------------------------------- odd timestamps

FLV_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "flv" / "h264_aac_320x240.flv"


def flv_tags(path):
    """(type, timestamp ms, body) of every tag of an FLV file."""
    b = path.read_bytes()
    pos = 13
    while pos + 11 <= len(b):
        n = int.from_bytes(b[pos + 1:pos + 4], "big")
        ts = int.from_bytes(b[pos + 4:pos + 7], "big") | b[pos + 7] << 24
        yield b[pos], ts, b[pos + 11:pos + 11 + n]
        pos += 11 + n + 4


def looped(loops):
    """The 1 s fixture (30 fps, IDR every 0.5 s, AAC) played `loops` times in a row."""
    tags = [t for t in flv_tags(FLV_FIXTURE) if t[0] in (8, 9)]
    configs = [t for t in tags if t[2][1] == 0]
    media = [t for t in tags if t[2][1] != 0]
    return configs + [(t, ts + k * 1000, b) for k in range(loops) for t, ts, b in media]


def test_timestamp_gap_keeps_segments_within_target(origin):
    """The publisher's clock skips 3 s (an encoder stall): every listed segment still
    rounds to at most EXT-X-TARGETDURATION."""
    tags = [(t, ts + (3000 if ts >= 1500 else 0), b) for t, ts, b in looped(4)]
    with attack(origin) as log:
        c = session(origin)
        c.out_chunk = 4096
        c.set_chunk_size(4096)
        sid = c.create_stream()
        c.command("publish", 0, None, "gap", "live", stream_id=sid, csid=8)
        assert c.status()["code"] == "NetStream.Publish.Start"
        for t, ts, body in tags:
            c.message(t, body, stream_id=sid, csid=6 if t == 9 else 4, ts=ts)
        # An explicit unpublish ends the stream at once (a lost connection would leave
        # it live for the grace period).
        c.command("deleteStream", 0, None, sid, csid=3)
        c.close()
        wait_log(log, 'publish "live/gap" ended')
    pl = parse_playlist(origin.vid.get("/live/gap/index.m3u8").text)
    assert pl.get("endlist") and len(pl["segments"]) >= 4, pl
    for s in pl["segments"]:
        assert round(s["dur"]) <= pl["target"], (s, pl["target"])


def test_looped_fixture_publishes_cleanly(origin):
    """The same raw publisher without the gap: 1 s segments (the control for the test above)."""
    with attack(origin) as log:
        c = session(origin)
        c.out_chunk = 4096
        c.set_chunk_size(4096)
        sid = c.create_stream()
        c.command("publish", 0, None, "nogap", "live", stream_id=sid, csid=8)
        assert c.status()["code"] == "NetStream.Publish.Start"
        for t, ts, body in looped(4):
            c.message(t, body, stream_id=sid, csid=6 if t == 9 else 4, ts=ts)
        # An explicit unpublish ends the stream at once (a lost connection would leave
        # it live for the grace period).
        c.command("deleteStream", 0, None, sid, csid=3)
        c.close()
        wait_log(log, 'publish "live/nogap" ended')
    pl = parse_playlist(origin.vid.get("/live/nogap/index.m3u8").text)
    assert pl["target"] == 1 and pl.get("endlist")
    # A fresh stream's first segment is cut at the first keyframe from half the target
    # (this fixture has a keyframe every 0.5 s); then 1 s segments, and the rest.
    assert [s["dur"] for s in pl["segments"]] == [0.5, 1.0, 1.0, 1.0, 0.5], pl
