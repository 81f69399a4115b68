#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/{target}/) from two tiny FLV files made by ffmpeg.

Usage: fuzz/make_seeds.py H264.flv H265.flv   (see fuzz/README.md for the ffmpeg commands)
"""
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def tags(path):
    b = open(path, "rb").read()
    off = struct.unpack(">I", b[5:9])[0] + 4
    while off + 11 <= len(b):
        ty = b[off] & 0x1F
        size = int.from_bytes(b[off + 1:off + 4], "big")
        ts = int.from_bytes(b[off + 4:off + 7], "big") | (b[off + 7] << 24)
        body = b[off + 11:off + 11 + size]
        yield ty, ts, body
        off += 11 + size + 4


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def amf_str(s):
    return b"\x02" + struct.pack(">H", len(s)) + s.encode()


def chunked(csid, type_id, sid, ts, payload):
    out = bytes([csid]) + ts.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id])
    out += struct.pack("<I", sid)
    for i in range(0, len(payload), 128):
        if i:
            out += bytes([0xC0 | csid])
        out += payload[i:i + 128]
    return out


def main():
    h264, h265 = sys.argv[1], sys.argv[2]
    connect = amf_str("connect") + b"\x00" + struct.pack(">d", 1.0) + b"\x03" + \
        b"\x00\x03app" + amf_str("live") + b"\x00\x00\x09"
    create = amf_str("createStream") + b"\x00" + struct.pack(">d", 2.0) + b"\x05"
    publish = amf_str("publish") + b"\x00" + struct.pack(">d", 3.0) + b"\x05" + amf_str("k") + amf_str("live")
    put("amf0", "connect", connect)
    put("amf0", "publish", publish)
    prefix = b"\x03" + bytes(1536 * 2) + chunked(3, 20, 0, 0, connect) + chunked(3, 20, 0, 0, create) + \
        chunked(3, 20, 1, 0, publish)
    for name, path in (("h264", h264), ("h265", h265)):
        ts_prev = 0
        msgs = b""
        raw = prefix
        n = 0
        vn = 0
        for ty, ts, body in tags(path):
            if ty not in (8, 9, 18) or len(body) > 0xFFFF:
                continue
            code = {9: 0, 8: 2, 18: 3}[ty]
            msgs += bytes([code]) + struct.pack("<HH", max(ts - ts_prev, 0), len(body)) + body
            raw += chunked(4 + (ty & 1), ty, 1, ts, body)
            ts_prev = ts
            if n < 6 and ty in (8, 9):
                put("flv", f"{name}-{n}", body)
            if ty == 9 and vn == 0:
                # The decoder configuration record after the FLV/Enhanced header bytes.
                rec = body[5:]
                put("codec", f"{name}-record", bytes([0 if name == "h264" else 1]) + rec)
            if ty == 9 and vn in (1, 2):
                put("codec", f"{name}-frame{vn}", bytes([4]) + body[5:])
            n += 1
            vn += ty == 9
        put("ingest", name, b"\x00" + msgs)
        put("ingest", name + "-ts", b"\x02" + msgs)
        put("rtmp_session", name, b"\x00" + raw[:20000])
        put("rtmp_session", name + "-split", b"\x87" + raw[:8000])
    put("codec", "asc-lc", b"\x03\x12\x10")
    put("codec", "asc-he", b"\x03\x2b\x92\x08\x00")
    put("uri", "playlist", b"/live/demo/index.m3u8?_HLS_msn=12&_HLS_part=3")
    put("uri", "part", b"/live/demo/12.3.m4s")
    put("uri", "init", b"/live/a_b-c/init2.mp4")
    put("uri", "query", b"_HLS_msn=5&_HLS_part=1&_HLS_skip=YES")
    put("playlist", "zero", b"\x00\x00")
    put("playlist", "small", bytes([0, 0x01]) + bytes(range(256)) * 4)
    put("playlist", "query", b"\x14\x00_HLS_msn=3&_HLS_part=1" + bytes([1, 0, 0, 0] * 64))


main()


def segmenter_seeds():
    # Header: segment target (500 + 100 x), part target (40 + 8 x), ts, TD, first dts.
    def stream(seg, part, ts, fps_idx, codec, gop, frames, audio=True, gap_at=None):
        b = bytes([seg, part, ts, 0, 0, 0])
        b += bytes([0, codec, fps_idx, 1])          # video config
        if audio:
            b += bytes([1, 1, 0, 0x10])             # 48 kHz AAC
        for i in range(frames):
            key = 0x80 if i % gop == 0 else 0
            step = 0x80 | 40 if gap_at == i else 0x03  # 33 ms, or a 40 ms gap
            b += bytes([2 | key, step, 0, 1 if i % gop else 19])
            if audio and i % 3 != 2:
                b += bytes([7, 0x01])
        return b
    put("segmenter", "h264-30fps-gop1s", stream(15, 20, 0, 1, 0, 30, 200))
    put("segmenter", "hevc-2997-gop2s-ts", stream(15, 20, 1, 2, 1, 60, 200))
    put("segmenter", "long-gop-gap", stream(5, 15, 0, 0, 0, 120, 240, audio=False, gap_at=50))


segmenter_seeds()
