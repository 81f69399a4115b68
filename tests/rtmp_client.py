"""A small RTMP publisher for tests and benchmarks: replays an FLV file in real time.

It knows just enough RTMP to publish (simple handshake, connect / createStream /
publish, chunked output, reading the server's replies) and records when each FLV tag was
sent, so a benchmark can tell when the frame that completes a part left the publisher.
It also lets a test stall the publisher on purpose (stop sending, keep the socket open).
"""

import os
import socket
import struct
import time


# ---------------------------------------------------------------------------- AMF0

def amf_number(v):
    return b"\x00" + struct.pack(">d", float(v))


def amf_string(s):
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_null():
    return b"\x05"


def amf_object(d):
    out = b"\x03"
    for k, v in d.items():
        kb = k.encode()
        out += struct.pack(">H", len(kb)) + kb
        out += amf_string(v) if isinstance(v, str) else amf_number(v)
    return out + b"\x00\x00\x09"


# ---------------------------------------------------------------------------- FLV

class FlvTag:
    __slots__ = ("kind", "ts", "data", "keyframe")

    def __init__(self, kind, ts, data):
        self.kind = kind  # 8 audio, 9 video, 18 script
        self.ts = ts  # ms
        self.data = data
        self.keyframe = kind == 9 and len(data) > 0 and (data[0] >> 4) == 1


def read_flv(path):
    """All tags of an FLV file, in file order."""
    data = open(path, "rb").read()
    if data[:3] != b"FLV":
        raise ValueError("not an FLV file")
    pos = struct.unpack(">I", data[5:9])[0] + 4
    tags = []
    while pos + 11 <= len(data):
        kind = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        ts = int.from_bytes(data[pos + 4:pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11:pos + 11 + size]
        if len(body) < size:
            break
        tags.append(FlvTag(kind, ts, body))
        pos += 11 + size + 4
    return tags


# ---------------------------------------------------------------------------- RTMP

CHUNK_SIZE = 4096


class RtmpPublisher:
    def __init__(self, host, port, app, key, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.app, self.key, self.host, self.port = app, key, host, port
        self.inbuf = b""
        self.in_chunk = 128
        self.in_streams = {}  # csid -> [header dict, partial payload]
        self.sent = []  # (wall-clock time just before its send, FlvTag) of every media tag
        self._handshake()
        self._send_msg(2, 1, 0, struct.pack(">I", CHUNK_SIZE))  # set chunk size
        self._command("connect", 1, amf_object({
            "app": app, "type": "nonprivate", "flashVer": "FMLE/3.0",
            "tcUrl": f"rtmp://{host}:{port}/{app}",
        }))
        self._wait_for(b"NetConnection.Connect.Success")
        self._command("releaseStream", 2, amf_null() + amf_string(key))
        self._command("FCPublish", 3, amf_null() + amf_string(key))
        self._command("createStream", 4, amf_null())
        self.stream_id = self._wait_create_stream(4)
        self._send_msg(8, 20, self.stream_id,
                       amf_string("publish") + amf_number(5) + amf_null() + amf_string(key) + amf_string("live"))
        self._wait_for(b"NetStream.Publish.Start")

    # -- output
    def _handshake(self):
        c1 = struct.pack(">II", 0, 0) + os.urandom(1528)
        self.sock.sendall(b"\x03" + c1)
        s = self._recv_exact(1 + 1536 + 1536)
        self.sock.sendall(s[1:1537])  # C2 echoes S1

    def _send_msg(self, csid, type_id, stream_id, payload, ts=0):
        ext = ts >= 0xFFFFFF
        hdr = bytes([csid & 0x3F]) + (0xFFFFFF if ext else ts).to_bytes(3, "big") + \
            len(payload).to_bytes(3, "big") + bytes([type_id]) + struct.pack("<I", stream_id)
        if ext:
            hdr += struct.pack(">I", ts)
        out = bytearray(hdr)
        for i in range(0, max(len(payload), 1), CHUNK_SIZE):
            if i:
                out.append(0xC0 | (csid & 0x3F))
                if ext:
                    out += struct.pack(">I", ts)
            out += payload[i:i + CHUNK_SIZE]
        self.sock.sendall(out)

    def _command(self, name, txn, rest):
        self._send_msg(3, 20, 0, amf_string(name) + amf_number(txn) + rest)

    # -- input
    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            b = self.sock.recv(n - len(buf))
            if not b:
                raise ConnectionError("RTMP server closed the connection")
            buf += b
        return buf

    def _messages(self):
        """Parse complete messages from the input buffer."""
        msgs = []
        while True:
            b = self.inbuf
            if not b:
                return msgs
            fmt, csid = b[0] >> 6, b[0] & 0x3F
            p = 1
            if csid == 0:
                if len(b) < 2:
                    return msgs
                csid, p = 64 + b[1], 2
            elif csid == 1:
                if len(b) < 3:
                    return msgs
                csid, p = 64 + b[1] + 256 * b[2], 3
            need = {0: 11, 1: 7, 2: 3, 3: 0}[fmt]
            if len(b) < p + need:
                return msgs
            st = self.in_streams.setdefault(csid, [{"ts": 0, "len": 0, "type": 0, "sid": 0}, b""])
            h = st[0]
            if fmt <= 2:
                ts = int.from_bytes(b[p:p + 3], "big")
            if fmt <= 1:
                h["len"] = int.from_bytes(b[p + 3:p + 6], "big")
                h["type"] = b[p + 6]
            if fmt == 0:
                h["sid"] = struct.unpack("<I", b[p + 7:p + 11])[0]
            p += need
            if fmt <= 2 and ts == 0xFFFFFF:
                if len(b) < p + 4:
                    return msgs
                p += 4
            take = min(self.in_chunk, h["len"] - len(st[1]))
            if len(b) < p + take:
                return msgs
            st[1] += b[p:p + take]
            self.inbuf = b[p + take:]
            if len(st[1]) == h["len"]:
                payload, st[1] = st[1], b""
                if h["type"] == 1:
                    self.in_chunk = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                msgs.append((h["type"], payload))

    def _read_until(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            for m in self._messages():
                if pred(m):
                    return m
            if time.monotonic() > deadline:
                raise TimeoutError("no expected reply from the RTMP server")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("RTMP server closed the connection")
            self.inbuf += d

    def _wait_for(self, needle):
        t, payload = self._read_until(lambda m: m[0] == 20 and (needle in m[1] or b"error" in m[1]))
        if needle not in payload:
            raise ConnectionError(f"RTMP error reply: {payload!r}")

    def _wait_create_stream(self, txn):
        want = amf_string("_result") + amf_number(txn)
        _, payload = self._read_until(lambda m: m[0] == 20 and m[1].startswith(want))
        # _result, txn, null, stream id (number: marker 0x00 + 8 bytes)
        if len(payload) >= 9 and payload[-9] == 0:
            return int(struct.unpack(">d", payload[-8:])[0])
        return 1

    def drain(self):
        """Read and discard whatever the server sent (acks, pings), without blocking."""
        self.sock.setblocking(False)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.setblocking(True)

    # -- media
    def send_tag(self, tag):
        csid = {8: 4, 9: 6}.get(tag.kind, 5)
        # Wall clock, comparable with the kernel's receive stamps (SO_TIMESTAMPNS) of a
        # benchmark's clients; taken before the send, which delivers on loopback at once.
        t = time.time()
        self._send_msg(csid, tag.kind, self.stream_id, tag.data, ts=tag.ts)
        if tag.kind in (8, 9):
            self.sent.append((t, tag))

    def replay(self, tags, realtime=True, stop=None, on_sent=None):
        """Send `tags` paced by their timestamps (video-led) until done or `stop()`."""
        t0 = time.monotonic()
        base = next((t.ts for t in tags if t.kind in (8, 9)), 0)
        for i, tag in enumerate(tags):
            if stop is not None and stop():
                return
            if realtime and tag.kind in (8, 9):
                due = t0 + (tag.ts - base) / 1000.0
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.send_tag(tag)
            if on_sent:
                on_sent(tag)
            if i % 64 == 0:
                self.drain()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
