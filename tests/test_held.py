"""Held requests (blocking playlist reloads, preload-hinted parts) against a real nginx:
each is decided on its own stream's index, whatever else the worker holds."""

import re
import subprocess
import threading
import time

from conftest import DEBIAN_FFMPEG, free_port, http, publish, wait_for
from rtmp_client import RtmpPublisher, read_flv
from test_lifecycle import LifeVid, kill, playlist, wait_segments

HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"')


def make_flv(path, seconds):
    subprocess.run([DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                    "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", "flv", str(path)],
                   check=True)


def max_age(resp):
    m = re.search(r"max-age=(\d+)", resp.headers.get("Cache-Control", ""))
    return int(m.group(1)) if m else None


def test_held_request_gets_its_own_streams_error_lifetime(tmp_path):
    """A held request on a stream that stopped changing times out (503) with ITS stream's
    error lifetime (1 × TD = 1 s), while the same worker holds requests on a busier stream
    with TD 4: the lifetime must not come from whichever stream was looked at last."""
    slow_port = free_port()
    vid = LifeVid(workers=1, segment="1s", part="200ms")
    conf = vid.prefix / "conf" / "nginx.conf"
    media = vid.prefix / "media"
    # A second RTMP server in the same zone, cutting 4 s segments (TD 4).
    conf.write_text(conf.read_text().replace("stream {\n", (
        "stream {\n    server {\n"
        f"        listen 127.0.0.1:{slow_port};\n        rtmp_live live;\n"
        f"        hls_live_path {media};\n        hls_live_segment 4s;\n        hls_live_part 200ms;\n"
        "    }\n"), 1))
    vid.start()
    flv = tmp_path / "a.flv"
    make_flv(flv, 4)
    busy = publish(f"rtmp://127.0.0.1:{slow_port}/live/busy", seconds=60, size="320x240")
    pub = None
    stop = threading.Event()
    try:
        # Stream "paused" (TD 1): 4 s of media, then the publisher stays connected and
        # sends nothing, so its index stops changing.
        pub = RtmpPublisher("127.0.0.1", vid.rtmp_port, "live", "paused")
        pub.replay(read_flv(flv))
        wait_segments(vid, "paused", 2)
        pl = wait_segments(vid, "busy", 1, timeout=30)
        assert pl["target"] == 4
        assert playlist(vid, "paused")["target"] == 1

        # Requests held on "busy" all the time: its index is copied at every part.
        def follow():
            while not stop.is_set():
                text = http(vid.url("/live/busy/index.m3u8"), timeout=15).text
                m = HINT.search(text)
                if m:
                    http(vid.url(f"/live/busy/index.m3u8?_HLS_msn={m.group(1)}&_HLS_part={m.group(2)}"),
                         timeout=15)

        threads = [threading.Thread(target=follow, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1)
        text = http(vid.url("/live/paused/index.m3u8")).text
        msn, part = HINT.search(text).groups()
        t0 = time.monotonic()
        held_part = {}
        held_pl = {}
        ta = threading.Thread(target=lambda: held_part.update(r=http(vid.url(f"/live/paused/{msn}.{part}.m4s"))))
        tb = threading.Thread(target=lambda: held_pl.update(
            r=http(vid.url(f"/live/paused/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"))))
        ta.start()
        tb.start()
        ta.join(15)
        tb.join(15)
        waited = time.monotonic() - t0
        for name, got in (("hinted part", held_part["r"]), ("blocking playlist", held_pl["r"])):
            assert got.status == 503, (name, got.status)
            # 1 × TD of "paused", not of "busy" (4).
            assert max_age(got) == 1, (name, got.headers.get("Cache-Control"))
        assert 2.5 < waited < 6, waited  # the hold limit: 3 × TD of "paused"
    finally:
        stop.set()
        if pub:
            pub.close()
        kill(busy)
        vid.stop()
        log = vid.log()
        vid.cleanup()
        assert "[alert]" not in log and "[emerg]" not in log, log[-3000:]
        assert not re.findall(r".*exited on signal.*", log)
