"""LL-HLS conformance of what vid serves: parts, server control, preload hints, blocking
playlist reload, delta updates, cache lifetimes and many held requests.

Rules are those of /work/shared/LL-HLS-CHECKLIST.md (RFC 8216bis §4.4.3.7, §4.4.3.8,
§4.4.5.3, §6.2.5, §6.2.6, Appendix B.1 and Apple's authoring spec). Everything is checked
on real responses of a real nginx + vid fed by a real ffmpeg publisher.
"""

import asyncio
import os
import re
import resource
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import DEBIAN_FFMPEG, FFPROBE, Vid, ffprobe_json, publish, wait_for

KEY = "ll"
PT = 0.2  # hls_live_part
EPS = 0.0015  # durations are printed with three decimals


# --------------------------------------------------------------------------- parsing

def attrs(s):
    """EXT-X attribute list -> dict (quoted strings unquoted)."""
    out = {}
    for m in re.finditer(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', s):
        v = m.group(2)
        out[m.group(1)] = v[1:-1] if v.startswith('"') else v
    return out


def parse_ll(text):
    """A small independent reading of an LL-HLS media playlist.

    Returns a dict with the header tags, `segments` (complete ones, each with its parts
    and the names of the tags that came before its first part), `partial` (the segment
    being built: its parts and tags), `hint` and `endlist`."""
    assert text.startswith("#EXTM3U\n"), text[:40]
    pl = {"segments": [], "hint": None, "endlist": False, "skip": None, "hints": []}
    cur = {"parts": [], "before_parts": [], "after_first_part": []}

    def tag(name):
        (cur["after_first_part"] if cur["parts"] else cur["before_parts"]).append(name)

    for line in text.split("\n"):
        if not line:
            continue
        name, _, value = line.partition(":")
        if name == "#EXT-X-VERSION":
            pl["version"] = int(value)
        elif name == "#EXT-X-TARGETDURATION":
            pl["target"] = int(value)
        elif name == "#EXT-X-MEDIA-SEQUENCE":
            pl["msn"] = int(value)
        elif name == "#EXT-X-SERVER-CONTROL":
            pl["server_control"] = attrs(value)
        elif name == "#EXT-X-PART-INF":
            pl["part_inf"] = attrs(value)
        elif name == "#EXT-X-SKIP":
            pl["skip"] = int(attrs(value)["SKIPPED-SEGMENTS"])
        elif name == "#EXT-X-ENDLIST":
            pl["endlist"] = True
        elif name == "#EXT-X-PRELOAD-HINT":
            a = attrs(value)
            pl["hints"].append(a)
            if a.get("TYPE") == "PART":
                pl["hint"] = a["URI"]
        elif name == "#EXT-X-DISCONTINUITY":
            cur["disc"] = True
            tag("DISCONTINUITY")
        elif name == "#EXT-X-MAP":
            cur["map"] = attrs(value)["URI"]
            tag("MAP")
        elif name == "#EXT-X-PROGRAM-DATE-TIME":
            cur["pdt"] = value
            tag("PDT")
        elif name == "#EXT-X-PART":
            a = attrs(value)
            cur["parts"].append({"uri": a["URI"], "dur": float(a["DURATION"]),
                                 "independent": a.get("INDEPENDENT") == "YES"})
        elif name == "#EXTINF":
            cur["dur"] = float(value.split(",")[0])
        elif not line.startswith("#"):
            cur["uri"] = line
            cur["seq"] = int(line.split(".")[0])
            pl["segments"].append(cur)
            cur = {"parts": [], "before_parts": [], "after_first_part": []}
    pl["partial"] = cur
    return pl


def part_id(uri):
    m, p, _ = uri.split(".")
    return int(m), int(p)


def last_part(pl):
    """(msn, part) of the newest listed part."""
    if pl["partial"]["parts"]:
        return part_id(pl["partial"]["parts"][-1]["uri"])
    for s in reversed(pl["segments"]):
        if s["parts"]:
            return part_id(s["parts"][-1]["uri"])
    return None


def next_msn(pl):
    return pl["msn"] + (pl["skip"] or 0) + len(pl["segments"])


# --------------------------------------------------------------------------- servers

def start_vid(conf_edit=None, **kw):
    """A Vid whose rendered configuration may be edited before it starts."""
    v = Vid(**kw)
    if conf_edit:
        conf = v.prefix / "conf" / "nginx.conf"
        conf.write_text(conf_edit(conf.read_text()))
    return v.start()


def stop_vid(v):
    v.stop()
    crashes, log = v.crashes(), v.log()
    v.cleanup()
    assert not crashes, f"worker crashed: {crashes}"
    assert "[alert]" not in log and "[emerg]" not in log, log[-4000:]


PLAIN_LOCATION = """
        location /plain/ {
            hls_live on;
            hls_live_low_latency off;
        }
"""


def add_plain_location(conf):
    """A second location serving the same streams without LL-HLS (/plain/KEY/...)."""
    return conf.replace("        location /live/ {", PLAIN_LOCATION + "\n        location /live/ {", 1)


@pytest.fixture(scope="module")
def live():
    """One origin (2 workers, 1 s segments, 200 ms parts, window 12) with a live stream
    whose GOP (0.4 s) puts IDRs at part starts inside segments: segments are 1.2 s."""
    v = start_vid(add_plain_location, workers=2, segment="1s", part="200ms", window=12)
    pub = publish(v.rtmp_url(KEY), seconds=600, size="320x240", gop=12)
    try:
        wait_for(lambda: v.get(f"/live/{KEY}/index.m3u8").status == 200 and
                 len(parse_ll(v.get(f"/live/{KEY}/index.m3u8").text)["segments"]) >= 3,
                 30, step=0.2, what="3 segments")
        yield v
    finally:
        pub.kill()
        pub.wait()
        stop_vid(v)


def get_pl(v, query="", key=KEY, prefix="/live", timeout=10):
    q = f"?{query}" if query else ""
    r = v.get(f"{prefix}/{key}/index.m3u8{q}", timeout=timeout)
    return r, (parse_ll(r.text) if r.status == 200 else None)


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, t0, time.monotonic()


def max_age(r):
    m = re.search(r"max-age=(\d+)", r.headers.get("Cache-Control", ""))
    assert m, f"no max-age in Cache-Control: {dict(r.headers)}"
    return int(m.group(1))


# --------------------------------------------------------------------------- parts

def test_parts_and_their_placement(live):
    """PART-INF, part durations, tag order before a segment's first part, parts only
    near the live edge, the preload hint naming the next part; over several updates."""
    seen = 0
    end = time.monotonic() + 4
    while time.monotonic() < end:
        r, pl = get_pl(live)
        assert r.status == 200
        assert "_HLS_" not in r.text
        td = pl["target"]
        assert "part_inf" in pl, "EXT-X-PART-INF whenever EXT-X-PART is present"
        part_target = float(pl["part_inf"]["PART-TARGET"])
        assert part_target == PT
        segs = pl["segments"] + ([pl["partial"]] if pl["partial"]["parts"] else [])
        for s in segs:
            complete = s is not pl["partial"]
            for i, p in enumerate(s["parts"]):
                assert p["dur"] <= part_target + EPS, (s.get("uri"), p)
                last_of_segment = complete and i == len(s["parts"]) - 1
                if not (p["independent"] or last_of_segment):
                    assert p["dur"] >= 0.85 * part_target - EPS, (s.get("uri"), p)
                assert part_id(p["uri"])[1] == i, "parts are numbered from 0 in order"
                if complete:
                    assert part_id(p["uri"])[0] == s["seq"], "part URIs name their segment"
            if s["parts"]:
                # DISCONTINUITY, MAP and PDT of a segment go before its first part.
                assert not {"DISCONTINUITY", "MAP", "PDT"} & set(s["after_first_part"]), s
                assert "PDT" in s["before_parts"]
                if complete:
                    assert abs(sum(p["dur"] for p in s["parts"]) - s["dur"]) < 0.002 * len(s["parts"]), s
        # Parts are listed for the segments of the last ~3 TD only (allow one segment
        # more), and for every complete segment that starts in that span.
        edge = sum(s["dur"] for s in pl["segments"]) + sum(p["dur"] for p in pl["partial"]["parts"])
        start = 0.0
        for s in pl["segments"]:
            if start >= edge - 3 * td + EPS:
                assert s["parts"], f"segment {s['uri']} at {start:.3f}s of {edge:.3f}s has no parts"
            if start + s["dur"] < edge - 3 * td - td:
                assert not s["parts"], f"parts of {s['uri']} listed {edge - start:.3f}s from the edge"
            start += s["dur"]
        # The preload hint names the part after the newest listed one.
        m, p = last_part(pl)
        hint = part_id(pl["hint"])
        nxt = next_msn(pl)
        if m == nxt:  # last part belongs to the segment being built
            assert hint == (m, p + 1), (pl["hint"], m, p)
        else:  # the newest part closed segment m; the hint is part 0 of the next one
            assert hint == (nxt, 0) and m == nxt - 1, (pl["hint"], m, p)
        assert [h["TYPE"] for h in pl["hints"]].count("PART") == 1
        seen += 1
        time.sleep(0.15)
    assert seen >= 10


def complete_segment_with_parts(v):
    _, pl = get_pl(v)
    segs = [s for s in pl["segments"] if s["parts"]]
    assert segs, "no complete segment with parts listed"
    return pl, segs[-1]


def map_of(pl, seg):
    """The EXT-X-MAP URI that applies to `seg`: the last one at or before it."""
    current = None
    for s in pl["segments"]:
        current = s.get("map") or current
        if s is seg:
            return current
    raise AssertionError("segment not in playlist")


def test_independent_parts_start_with_idr(live, tmp_path):
    """INDEPENDENT=YES exactly on the parts whose first video frame is an IDR (the 0.4 s
    GOP puts IDRs at parts 0, 2 and 4 of every 1.2 s segment); checked by decoding."""
    if not os.path.exists(FFPROBE):
        pytest.skip("ffprobe missing")
    pl, seg = complete_segment_with_parts(live)
    init = live.get(f"/live/{KEY}/{map_of(pl, seg)}").body
    whole = tmp_path / "seg.mp4"
    whole.write_bytes(init + live.get(f"/live/{KEY}/{seg['uri']}").body)
    frames = ffprobe_json(whole, "-select_streams", "v", "-show_entries", "frame=pts,key_frame,pict_type")["frames"]
    key_at = {f["pts"]: (f["key_frame"], f["pict_type"]) for f in frames}
    flags = []
    for p in seg["parts"]:
        f = tmp_path / "part.mp4"
        body = live.get(f"/live/{KEY}/{p['uri']}").body
        f.write_bytes(init + body)
        pk = ffprobe_json(f, "-select_streams", "v", "-show_entries", "packet=pts,dts,flags")["packets"]
        first = min(pk, key=lambda x: int(x["dts"]))
        key_frame, pict = key_at[first["pts"]]
        flags.append((p["uri"], p["independent"], key_frame, pict, first["flags"]))
        assert p["independent"] == (key_frame == 1), flags
        assert ("K" in first["flags"]) == (key_frame == 1), flags
        if p["independent"]:
            # An independent part decodes on its own (with the init section).
            dec = subprocess.run([DEBIAN_FFMPEG, "-v", "error", "-i", str(f), "-f", "null", "-"],
                                 capture_output=True, text=True, timeout=60)
            assert dec.returncode == 0 and dec.stderr.strip() == "", dec.stderr
    assert sum(1 for x in flags if x[1]) >= 2, f"expected IDRs inside the segment: {flags}"
    assert sum(1 for x in flags if not x[1]) >= 1, flags


def test_parts_concatenate_to_segment(live):
    """A segment and its parts carry identical samples: here, identical bytes."""
    _, seg = complete_segment_with_parts(live)
    parts = b"".join(live.get(f"/live/{KEY}/{p['uri']}").body for p in seg["parts"])
    whole = live.get(f"/live/{KEY}/{seg['uri']}")
    assert whole.status == 200
    assert len(parts) == len(whole.body) and parts == whole.body


def test_parts_stay_downloadable_after_removal(live):
    """M: part URIs stay downloadable >= 3 x TD after the playlist stops listing them."""
    _, pl = get_pl(live)
    seg = next(s for s in pl["segments"] if s["parts"])
    uris = [p["uri"] for p in seg["parts"]]
    wait_for(lambda: f'URI="{uris[0]}"' not in get_pl(live)[0].text, 10, step=0.05, what="parts to be dropped")
    time.sleep(3 * pl["target"] + 0.2)
    for u in uris:
        r = live.get(f"/live/{KEY}/{u}")
        assert r.status == 200, (u, r.status)


# --------------------------------------------------------------------------- server control

def test_server_control(live):
    _, pl = get_pl(live)
    sc = pl["server_control"]
    td = pl["target"]
    part_target = float(pl["part_inf"]["PART-TARGET"])
    assert sc["CAN-BLOCK-RELOAD"] == "YES"
    assert float(sc["PART-HOLD-BACK"]) >= 3 * part_target - EPS  # Apple 14.3
    if "HOLD-BACK" in sc:
        assert float(sc["HOLD-BACK"]) >= 3 * td - EPS
    assert float(sc["CAN-SKIP-UNTIL"]) >= 6 * td - EPS
    assert "CAN-SKIP-DATERANGES" not in sc
    assert pl["version"] >= 6 and pl["skip"] is None
    # Each EXTINF rounds to at most TARGETDURATION.
    assert all(round(s["dur"]) <= td for s in pl["segments"])


# --------------------------------------------------------------------------- preload hints

def test_preload_hint_get_is_held_until_the_part_lands(live):
    """GET of the hinted part is held, answered as soon as the part exists (together with
    a blocking reload for the same part), with the bytes the part keeps afterwards; the
    hinted URI is the later EXT-X-PART URI."""
    for _ in range(3):
        _, pl = get_pl(live)
        hint = pl["hint"]
        m, p = part_id(hint)
        with ThreadPoolExecutor(2) as ex:
            held = ex.submit(timed, live.get, f"/live/{KEY}/{hint}")
            blk = ex.submit(timed, get_pl, live, f"_HLS_msn={m}&_HLS_part={p}")
            (r, t0, t1), ((rp, plp), u0, u1) = held.result(), blk.result()
        if r.status == 404 and part_id(get_pl(live)[1]["hint"]) > (m, p):
            continue  # the hint was abandoned in between (cannot happen on this GOP)
        assert r.status == 200, r.status
        assert rp.status == 200
        listed = [x["uri"] for s in plp["segments"] + [plp["partial"]] for x in s["parts"]]
        assert hint in listed, "the hinted URI is the later EXT-X-PART URI"
        assert t1 - t0 <= PT + 0.3, f"held GET took {t1 - t0:.3f}s for a {PT}s part"
        assert abs(t1 - u1) <= 0.1, f"GET answered {t1 - u1:+.3f}s from the blocking reload"
        again = live.get(f"/live/{KEY}/{hint}")
        assert again.status == 200 and again.body == r.body
        assert r.headers["Content-Type"] == "video/mp4"
        assert int(r.headers["Content-Length"]) == len(r.body) > 0
        return
    pytest.fail("hint kept being abandoned")


def test_part_neither_present_nor_hinted_is_404(live):
    _, pl = get_pl(live)
    m, p = part_id(pl["hint"])
    for uri in (f"{m + 5}.0.m4s", f"{m}.{p + 3}.m4s", f"{m + 2}.0.m4s", f"{m + 2}.m4s"):
        r, t0, t1 = timed(live.get, f"/live/{KEY}/{uri}")
        assert r.status == 404, (uri, r.status)
        assert t1 - t0 < 0.1, f"{uri} was held ({t1 - t0:.3f}s)"


# --------------------------------------------------------------------------- blocking reload

def test_blocking_msn_waits_for_the_segment(live):
    _, pl = get_pl(live)
    m = next_msn(pl) + 1  # last complete + 2: the furthest allowed
    (r, npl), t0, t1 = timed(get_pl, live, f"_HLS_msn={m}")
    assert r.status == 200
    assert next_msn(npl) - 1 >= m, "returned once segment M exists"
    assert any(s["seq"] == m for s in npl["segments"])
    assert 0.3 < t1 - t0 < 2 * 1.2 + 0.5, t1 - t0
    assert "_HLS_" not in r.text
    assert max_age(r) == 6 * npl["target"], "blocking 200: 6 x TD"
    # An old MSN (even one that scrolled out) returns the whole playlist at once.
    for old in (0, npl["msn"], m):
        (r, opl), t0, t1 = timed(get_pl, live, f"_HLS_msn={old}")
        assert r.status == 200 and t1 - t0 < 0.1
        assert opl["msn"] >= npl["msn"] and opl["skip"] is None


def test_blocking_part(live):
    _, pl = get_pl(live)
    m, p = part_id(pl["hint"])
    (r, npl), t0, t1 = timed(get_pl, live, f"_HLS_msn={m}&_HLS_part={p}")
    assert r.status == 200
    listed = [x["uri"] for s in npl["segments"] + [npl["partial"]] for x in s["parts"]]
    assert f"{m}.{p}.m4s" in listed
    assert t1 - t0 <= PT + 0.3
    assert npl["hint"] != pl["hint"]


def test_blocking_part_past_the_last_part_means_next_segment(live):
    """Part index past the last part of M = part 0 of M+1 (segments have 6 parts here)."""
    _, pl = get_pl(live)
    m = next_msn(pl)
    (r, npl), t0, t1 = timed(get_pl, live, f"_HLS_msn={m}&_HLS_part=6")
    assert r.status == 200
    listed = [x["uri"] for s in npl["segments"] + [npl["partial"]] for x in s["parts"]]
    assert f"{m}.5.m4s" in listed and f"{m + 1}.0.m4s" in listed, listed[-8:]
    assert f"{m}.6.m4s" not in listed
    # And at once for a complete segment whose next part 0 exists.
    (r, _), t0, t1 = timed(get_pl, live, f"_HLS_msn={m}&_HLS_part=9")
    assert r.status == 200 and t1 - t0 < 0.1


def test_blocking_bad_requests(live):
    assert get_pl(live, "_HLS_part=1")[0].status == 400, "_HLS_part without _HLS_msn"
    assert get_pl(live, "_HLS_msn=x")[0].status == 400
    assert get_pl(live, "_HLS_msn=1&_HLS_msn=2")[0].status == 400
    assert get_pl(live, "_HLS_skip=NO")[0].status == 400
    # M > last + 2: wait for a fresh segment so that none lands during the check.
    _, pl = get_pl(live)
    get_pl(live, f"_HLS_msn={next_msn(pl)}&_HLS_part=0")
    _, pl = get_pl(live)
    last = next_msn(pl) - 1
    r, t0, t1 = timed(get_pl, live, f"_HLS_msn={last + 3}")
    assert r[0].status == 400 and t1 - t0 < 0.1, "M > last MSN + 2"
    # Beyond the advance part limit (3 / PART-TARGET = 15 parts at 200 ms).
    r, t0, t1 = timed(get_pl, live, f"_HLS_msn={last + 1}&_HLS_part=20")
    assert r[0].status == 400 and t1 - t0 < 0.1, "part beyond the advance part limit"
    r, t0, t1 = timed(get_pl, live, f"_HLS_msn={last + 2}&_HLS_part=14")
    assert r[0].status == 400 and t1 - t0 < 0.1, "part beyond the advance part limit"
    # Unknown parameters are ignored; a non-blocking playlist is not held.
    r, t0, t1 = timed(get_pl, live, "foo=bar&_HLS_foo=1")
    assert r[0].status == 200 and t1 - t0 < 0.1


def test_next_part_cadence(live):
    """A client that always asks for the next part gets one every part target."""
    _, pl = get_pl(live)
    m, p = part_id(pl["hint"])
    get_pl(live, f"_HLS_msn={m}&_HLS_part={p}")  # align on a fresh part
    times, durs = [], []
    for _ in range(16):
        _, pl = get_pl(live)
        m, p = part_id(pl["hint"])
        r, npl = get_pl(live, f"_HLS_msn={m}&_HLS_part={p}")
        assert r.status == 200
        times.append(time.monotonic())
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(f"next-part gaps: median {sorted(gaps)[len(gaps) // 2] * 1000:.0f} ms, "
          f"max {max(gaps) * 1000:.0f} ms")
    assert max(gaps) <= PT + 0.15, [round(g, 3) for g in gaps]
    assert abs(sum(gaps) / len(gaps) - PT) < 0.05, [round(g, 3) for g in gaps]


# --------------------------------------------------------------------------- delta updates

def test_delta_update(live):
    """_HLS_skip=YES: EXT-X-SKIP with VERSION >= 9 and the tail of the full playlist."""
    def delta_ready():
        _, pl = get_pl(live)
        return pl if sum(s["dur"] for s in pl["segments"]) > 6 * pl["target"] + 1.3 else None

    wait_for(delta_ready, 20, step=0.3, what="a playlist longer than CAN-SKIP-UNTIL")
    for _ in range(10):
        r1, full = get_pl(live)
        rd, delta = get_pl(live, "_HLS_skip=YES")
        r2, full2 = get_pl(live)
        if r1.text != r2.text:
            continue  # an update landed in between
        assert rd.status == 200 and "_HLS_" not in rd.text
        n = delta["skip"]
        assert n and n >= 1, rd.text
        assert delta["version"] >= 9 and full["version"] < 9
        assert delta["msn"] == full["msn"]
        until = float(full["server_control"]["CAN-SKIP-UNTIL"])
        assert [s["uri"] for s in delta["segments"]] == [s["uri"] for s in full["segments"][n:]]
        for a, b in zip(delta["segments"], full["segments"][n:]):
            assert (a["dur"], a.get("pdt"), a["parts"]) == (b["dur"], b.get("pdt"), b["parts"])
        assert delta["partial"]["parts"] == full["partial"]["parts"]
        assert delta["hint"] == full["hint"]
        # Only segments before the skip boundary (CAN-SKIP-UNTIL from the end) are skipped.
        kept = sum(s["dur"] for s in delta["segments"])
        assert kept >= until - EPS
        assert kept - delta["segments"][0]["dur"] < until, "skips every segment it may"
        # The first segment after the skip still says which init section it uses.
        assert delta["segments"][0].get("map"), "EXT-X-MAP before the first listed segment"
        break
    else:
        pytest.fail("playlist kept changing")
    # Blocking and delta together.
    m, p = part_id(full["hint"])
    r, dpl = get_pl(live, f"_HLS_msn={m}&_HLS_part={p}&_HLS_skip=YES")
    assert r.status == 200 and dpl["skip"] >= 1 and dpl["version"] >= 9
    # v2 is answered like YES (no CAN-SKIP-DATERANGES).
    r, dpl = get_pl(live, "_HLS_skip=v2")
    assert r.status == 200 and dpl["skip"] >= 1


# --------------------------------------------------------------------------- caching

def test_cache_control_per_kind(live):
    r, pl = get_pl(live)
    td = pl["target"]
    assert max_age(r) == max(td // 2, 1), "non-blocking playlist: TD / 2 (at least 1 s)"
    m, p = part_id(pl["hint"])
    r, _ = get_pl(live, f"_HLS_msn={m}&_HLS_part={p}")
    assert max_age(r) == 6 * td, "blocking playlist 200: 6 x TD"
    seg = next(s for s in pl["segments"] if s["parts"])
    for uri in (seg["uri"], seg["parts"][0]["uri"], map_of(pl, seg)):
        r = live.get(f"/live/{KEY}/{uri}")
        assert r.status == 200 and max_age(r) >= 3600, (uri, r.headers.get("Cache-Control"))
    # The held GET of a hinted part: blocking segment/part 200 -> at least 6 x TD.
    _, pl = get_pl(live)
    r = live.get(f"/live/{KEY}/{pl['hint']}")
    assert r.status == 200 and max_age(r) >= 6 * td


# --------------------------------------------------------------------------- plain location

def test_plain_location_has_no_ll_hls(live):
    """hls_live_low_latency off: no LL tags, _HLS_ parameters ignored (nothing advertised)."""
    r, pl = get_pl(live, prefix="/plain")
    assert r.status == 200
    for t in ("#EXT-X-PART", "#EXT-X-PRELOAD-HINT", "#EXT-X-SERVER-CONTROL", "#EXT-X-SKIP"):
        assert t not in r.text
    _, llpl = get_pl(live)
    for q in ("_HLS_skip=YES", f"_HLS_msn={next_msn(llpl) + 1}", "_HLS_msn=99999&_HLS_part=3"):
        r, t0, t1 = timed(get_pl, live, q, prefix="/plain")
        assert r[0].status == 200 and t1 - t0 < 0.1, q
        assert "#EXT-X-SKIP" not in r[0].text and r[1]["version"] < 9


# --------------------------------------------------------------------------- stall and end

def test_stalled_publisher_503_then_end(vid_factory):
    """A publisher that stops sending (SIGSTOP, socket open): held requests get 503 after
    3 x TD. When it goes away, held requests are released, and once the playlist has
    ENDLIST the _HLS_ parameters are ignored and no hint is given."""
    # No grace period: the lost connection ends the stream at once (see test_lifecycle.py
    # for the grace period).
    v = vid_factory(workers=1, segment="1s", window=6, stream_extra="hls_live_grace 0;")
    pub = publish(v.rtmp_url("stall"), seconds=60, size="320x240")
    try:
        wait_for(lambda: (lambda r: r.status == 200 and len(parse_ll(r.text)["segments"]) >= 2)(
            v.get("/live/stall/index.m3u8")), 20, step=0.2, what="2 segments")
        pub.send_signal(signal.SIGSTOP)
        time.sleep(0.3)
        _, pl = get_pl(v, key="stall")
        td = pl["target"]
        m = next_msn(pl)
        hint = pl["hint"]
        with ThreadPoolExecutor(3) as ex:
            a = ex.submit(timed, get_pl, v, f"_HLS_msn={m}", key="stall")
            b = ex.submit(timed, v.get, f"/live/stall/{hint}")
            c = ex.submit(timed, get_pl, v, f"_HLS_msn={m}&_HLS_part={part_id(hint)[1]}", key="stall")
            (ra, _), a0, a1 = a.result()
            rb, b0, b1 = b.result()
            (rc, _), c0, c1 = c.result()
        for name, r, d in (("msn", ra, a1 - a0), ("hinted part", rb, b1 - b0), ("part", rc, c1 - c0)):
            assert r.status == 503, (name, r.status)
            assert 3 * td - 0.05 <= d <= 3 * td + 0.5, (name, d)
        # Held requests are released when the stream ends: the blocking reload with the
        # ENDLIST playlist, the hinted GET with the part flushed at the end.
        with ThreadPoolExecutor(2) as ex:
            a = ex.submit(timed, get_pl, v, f"_HLS_msn={m}", key="stall")
            b = ex.submit(timed, v.get, f"/live/stall/{hint}")
            time.sleep(0.5)
            t_kill = time.monotonic()
            pub.kill()
            pub.wait()
            (ra, apl), _, a1 = a.result()
            rb, _, b1 = b.result()
        assert ra.status == 200 and apl["endlist"], ra.status
        assert a1 - t_kill < 1.0
        assert b1 - t_kill < 1.0
        listed = [x["uri"] for s in apl["segments"] for x in s["parts"]]
        if hint in listed:
            assert rb.status == 200 and rb.body == v.get(f"/live/stall/{hint}").body
        else:
            assert rb.status == 404, rb.status
    finally:
        if pub.poll() is None:
            pub.kill()
            pub.wait()
    r, pl = get_pl(v, key="stall")
    assert pl["endlist"] and pl["hint"] is None and not pl["hints"]
    assert "#EXT-X-PRELOAD-HINT" not in r.text
    assert not pl["partial"]["parts"], "no parts after the last segment"
    last = next_msn(pl) - 1
    for q in (f"_HLS_msn={last + 10}", f"_HLS_msn={last + 10}&_HLS_part=40", f"_HLS_msn={last}&_HLS_part=99",
              "_HLS_skip=YES", f"_HLS_msn={last + 5}&_HLS_skip=YES"):
        (r, qpl), t0, t1 = timed(get_pl, v, q, key="stall")
        assert r.status == 200 and t1 - t0 < 0.1, (q, r.status)
        assert qpl["endlist"] and qpl["skip"] is None and "_HLS_" not in r.text, q
        assert r.text == get_pl(v, key="stall")[0].text, q
        assert max_age(r) == max(pl["target"] // 2, 1), "not blocking after ENDLIST"


def test_error_cache_lifetimes(vid_factory):
    """Delivery: a blocking segment/part error is cached for 1 TD (LL-HLS-CHECKLIST)."""
    v = vid_factory(workers=1, segment="1s", window=6)
    pub = publish(v.rtmp_url("err"), seconds=60, size="320x240")
    try:
        wait_for(lambda: v.get("/live/err/index.m3u8").status == 200, 20, what="playlist")
        pub.send_signal(signal.SIGSTOP)
        time.sleep(0.3)
        _, pl = get_pl(v, key="err")
        r = v.get(f"/live/err/{pl['hint']}")  # held, then 503 after 3 x TD
        assert r.status == 503
        assert max_age(r) == pl["target"], "blocking part error: 1 x TD"
    finally:
        pub.kill()
        pub.wait()


# --------------------------------------------------------------------------- stream start, republish

def test_blocking_reload_before_the_first_segment(vid_factory):
    """TARGETDURATION never changes: a blocking reload held at stream start must not be
    answered with a playlist rendered before the first segment decided it (the plain
    playlist is 404 until then). 1 s segment target, 2.5 s GOP: TARGETDURATION stays 1
    (segments are cut without a keyframe before they pass 1.5 s)."""
    v = vid_factory(workers=1, segment="1s", window=6)
    pub = publish(v.rtmp_url("start"), seconds=12, size="320x240", gop=75)
    try:
        def early():
            r = v.get("/live/start/index.m3u8?_HLS_msn=0&_HLS_part=1")
            return r if r.status != 404 else None

        r = wait_for(early, 10, step=0.02, what="a blocking reload to be held")
        assert r.status == 200
        first = parse_ll(r.text)
        later = wait_for(lambda: (lambda p: p if p and p["segments"] else None)(get_pl(v, key="start")[1]),
                         10, step=0.1, what="first segment")
        assert later["target"] == 1
        assert all(round(seg["dur"]) <= 1 for seg in later["segments"]), later["segments"]
        assert first["target"] == later["target"], "TARGETDURATION changed"
        assert first["segments"], "answered before segment 0 existed"
    finally:
        pub.kill()
        pub.wait()


@pytest.fixture(scope="module")
def republished():
    """Playlists seen (every 40 ms) while a stream is published again after it ended."""
    v = start_vid(workers=1, segment="1s", window=12)
    try:
        pub = publish(v.rtmp_url("again"), seconds=3, size="320x240")
        pub.wait(30)
        wait_for(lambda: parse_ll(v.get("/live/again/index.m3u8").text)["endlist"], 10, what="ENDLIST")
        pub = publish(v.rtmp_url("again"), seconds=4, size="320x240")
        seen = []
        end = time.monotonic() + 3.5
        while time.monotonic() < end:
            r = v.get("/live/again/index.m3u8")
            if r.status == 200:
                seen.append(parse_ll(r.text))
            time.sleep(0.04)
        pub.kill()
        pub.wait()
        yield seen
    finally:
        stop_vid(v)


def disc_segments(seen):
    """(playlist, segment) for every listed segment with parts that starts a new timeline."""
    out = []
    for pl in seen:
        for s in pl["segments"] + [pl["partial"]]:
            if s.get("disc") and s["parts"]:
                out.append((pl, s))
    return out


def test_republish_discontinuity_and_map_before_parts(republished):
    found = disc_segments(republished)
    assert any(s is pl["partial"] for pl, s in found), "never saw the new timeline's partial segment"
    for pl, s in found:
        assert {"DISCONTINUITY", "MAP"} <= set(s["before_parts"]), s
        assert not {"DISCONTINUITY", "MAP", "PDT"} & set(s["after_first_part"]), s
        assert s["map"] != "init1.mp4", "the new publish has its own init section"


def test_republish_partial_segment_has_program_date_time(republished):
    """PDT before a segment's first part, in every live playlist, and a listed segment's
    tags never change afterwards (updates only append)."""
    found = disc_segments(republished)
    assert found
    for pl, s in found:
        assert "PDT" in s["before_parts"], f"parts of a new timeline listed without a date: {s['parts'][:1]}"


# --------------------------------------------------------------------------- many held requests

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


async def held_requests(port, path, n, batch=250):
    """n HTTP/1.1 requests, one per connection, all sent before any answer is read.
    Returns (time the last was sent, [(status, cache_control, body, t_answer)])."""
    async def send():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"GET {path} HTTP/1.1\r\nHost: vid\r\nConnection: close\r\n\r\n".encode())
        await w.drain()
        return r, w

    async def answer(r, w):
        data = await r.read()
        t = time.monotonic()
        w.close()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and lines[0] else 0
        cc = next((l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("cache-control:")), "")
        return status, cc, body, t

    conns = []
    for i in range(0, n, batch):
        conns += await asyncio.gather(*(send() for _ in range(i, min(n, i + batch))))
    send_done = time.monotonic()
    results = await asyncio.gather(*(answer(r, w) for r, w in conns), return_exceptions=True)
    return send_done, results


@pytest.mark.parametrize("workers", [1, 4])
def test_2000_held_playlist_requests(vid_factory, workers):
    n = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    v = vid_factory(workers=workers, segment="2s", window=6)
    pub = publish(v.rtmp_url("many"), seconds=60, size="320x240", gop=60)
    try:
        wait_for(lambda: (lambda r: r.status == 200 and len(parse_ll(r.text)["segments"]) >= 1)(
            v.get("/live/many/index.m3u8")), 20, step=0.2, what="a segment")
        pids = v.worker_pids()
        time.sleep(0.5)
        before = {p: rss_kb(p) for p in pids}
        cpu0 = {p: cpu_s(p) for p in pids}
        # Wait for a fresh segment so the whole burst is sent before the next one lands.
        _, pl = get_pl(v, key="many")
        get_pl(v, f"_HLS_msn={next_msn(pl)}", key="many")
        _, pl = get_pl(v, key="many")
        m = next_msn(pl) + 1  # lands in 2..4 s
        t0 = time.monotonic()
        holder = {}

        def count_held():
            time.sleep(1.2)
            holder["sockets"] = {p: sockets(p) for p in pids}

        th = threading.Thread(target=count_held)
        th.start()
        send_done, results = asyncio.run(held_requests(v.http_port, f"/live/many/index.m3u8?_HLS_msn={m}", n))
        th.join()
        after = {p: rss_kb(p) for p in pids}
        cpu1 = {p: cpu_s(p) for p in pids}
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{len(errors)} client errors, e.g. {errors[0]!r}"
        statuses = {}
        for status, _, _, _ in results:
            statuses[status] = statuses.get(status, 0) + 1
        assert statuses == {200: n}, statuses
        answered = sorted(t for _, _, _, t in results)
        assert answered[0] > send_done, "every request was held until the segment landed"
        for status, cc, body, _ in results[:: max(1, n // 50)]:
            bpl = parse_ll(body.decode())
            assert any(s["seq"] == m for s in bpl["segments"]) and cc == f"max-age={6 * bpl['target']}"
        spread = answered[-1] - answered[0]
        print(f"\n{workers} worker(s): {n} held requests sent in {send_done - t0:.2f}s, "
              f"answered {answered[0] - t0:.2f}..{answered[-1] - t0:.2f}s (spread {spread * 1000:.0f} ms); "
              f"held sockets per worker {holder.get('sockets')}; "
              f"RSS kB before {before} after {after}; "
              f"worker CPU during the run {({p: round(cpu1[p] - cpu0[p], 2) for p in pids})} s")
        assert spread < 1.0, spread
        assert all(after[p] - before[p] < 64 * 1024 for p in pids), (before, after)
    finally:
        pub.kill()
        pub.wait()


def test_open_file_cache_serves_growing_segments_correctly(vid_factory):
    """With nginx's open_file_cache in the location, parts are fetched while their
    segment's file grows (each fetch may reuse a descriptor cached when the file was
    shorter), and every complete segment is served whole: its bytes are its parts'."""
    vid = vid_factory(segment="1s", part="200ms",
                      live_extra="open_file_cache max=1000 inactive=30s; open_file_cache_valid 30s; "
                                 "open_file_cache_min_uses 1;")
    pub = publish(vid.rtmp_url("ofc"), seconds=20)
    try:
        got = {}
        complete = {}  # segment URI -> its part URIs, once listed with EXTINF
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            r = vid.get("/live/ofc/index.m3u8")
            if r.status == 200:
                pl = parse_ll(r.text)
                for s in pl["segments"] + [pl["partial"]]:
                    for p in s["parts"]:
                        if p["uri"] not in got:
                            part = vid.get(f"/live/ofc/{p['uri']}")
                            assert part.status == 200, p["uri"]
                            got[p["uri"]] = part.body
                for s in pl["segments"]:
                    if s["parts"] and all(p["uri"] in got for p in s["parts"]):
                        complete.setdefault(s["uri"], [p["uri"] for p in s["parts"]])
            time.sleep(0.05)
        assert len(complete) >= 5, complete
        for uri, parts in complete.items():
            # Whole segments right after they completed, while a descriptor cached when
            # the file held fewer parts may still be in the cache.
            whole = vid.get(f"/live/ofc/{uri}")
            assert whole.status == 200, uri
            assert whole.body == b"".join(got[p] for p in parts), uri
            assert int(whole.headers["Content-Length"]) == len(whole.body)
    finally:
        pub.kill()
        pub.wait()
