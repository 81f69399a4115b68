"""Operating vid: Prometheus metrics (`hls_live_metrics;`), the log variables and the
status API, against a real nginx + vid, real ffmpeg publishers, Debian's promtool and a
real Prometheus server that scrapes vid.

Needs `prometheus` (Debian package, which also brings promtool); skipped with the reason
when it is missing.
"""

import json
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import DEBIAN_FFMPEG, free_port, http, parse_playlist, publish, wait_for

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def parse_metrics(text):
    """{(name, frozenset(labels)): value}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(vid):
    r = vid.get("/metrics")
    assert r.status == 200, r.status
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return r.text


def promtool_check(text):
    assert PROMTOOL, "promtool not found (Debian package prometheus)"
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def live_playlist(vid, key, timeout=30):
    def ready():
        r = vid.get(f"/live/{key}/index.m3u8")
        return r.text if r.status == 200 and "#EXT-X-PART:" in r.text else None
    return wait_for(ready, timeout, step=0.2, what=f"{key} playlist")


def test_request_counters_match_clients_with_two_workers(vid_factory):
    """Every kind of request, from many connections over 2 workers: the counters equal
    what the clients counted; promtool accepts the output; the access log carries the
    hls_live variables; the status API shows the stream."""
    if not PROMTOOL:
        pytest.skip("promtool not installed (Debian package prometheus)")
    vid = vid_factory(workers=2)
    key = "metrics2w"
    pub = publish(vid.rtmp_url(key), seconds=40)
    try:
        pl = parse_playlist(live_playlist(vid, key))
        text = vid.get(f"/live/{key}/index.m3u8").text
        init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
        seg = pl["segments"][-1]["uri"]
        parts = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', text)
        hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text).group(1)
        next_msn = int(hint.split(".")[0])
        next_part = int(hint.split(".")[1])

        kinds = ("playlist", "blocking", "part", "segment", "init", "multivariant")
        # What vid counted before: the requests above that waited for the stream. A
        # request is counted in nginx's log phase, which may run just after its client
        # got the answer: the baseline is taken once two scrapes in a row agree.
        def counters():
            s = parse_metrics(scrape(vid))
            return ({k: metric(s, "vid_http_requests_total", stream=key, kind=k) for k in kinds},
                    metric(s, "vid_http_error_responses_total", stream=key, status="404"),
                    metric(s, "vid_http_response_bytes_total", stream=key))
        seen = [counters()]

        def stable():
            time.sleep(0.3)
            seen.append(counters())
            return seen[-1] if seen[-1] == seen[-2] else None
        base, base_404, base_bytes = wait_for(stable, 10, what="counters to settle")
        counted = {k: 0 for k in kinds}
        statuses = {}
        body_bytes = 0

        def get(path, kind):
            nonlocal body_bytes
            # A new connection per request (urllib): the kernel spreads them over workers.
            r = vid.get(path)
            counted[kind] += 1
            statuses[r.status] = statuses.get(r.status, 0) + 1
            body_bytes += len(r.body)
            return r

        for _ in range(7):
            assert get(f"/live/{key}/index.m3u8", "playlist").status == 200
        for _ in range(3):
            assert get(f"/live/{key}/master.m3u8", "multivariant").status == 200
        for _ in range(2):
            assert get(f"/live/{key}/{init}", "init").status == 200
        for p in parts[-4:]:
            assert get(f"/live/{key}/{p}", "part").status == 200
        assert get(f"/live/{key}/{seg}", "segment").status == 200
        # Held: a blocking reload for the next part and the preload-hinted part itself.
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(
                get(f"/live/{key}/index.m3u8?_HLS_msn={next_msn + 1}&_HLS_part=0", "blocking").status)),
            threading.Thread(target=lambda: results.append(get(f"/live/{key}/{hint}", "part").status)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [200, 200] or sorted(results) == [200, 200], results
        # Errors: a segment long gone (404) and a bad blocking request (400).
        assert get(f"/live/{key}/1.m4s", "segment").status == 404
        assert get(f"/live/{key}/index.m3u8?_HLS_part=1", "blocking").status == 400

        def settled():
            s = parse_metrics(scrape(vid))
            got = {k: metric(s, "vid_http_requests_total", stream=key, kind=k) - base[k] for k in counted}
            return (s, got) if got == {k: float(v) for k, v in counted.items()} else None
        try:
            samples, _ = wait_for(settled, 10, what="request counters to match")
        except AssertionError:
            s = parse_metrics(scrape(vid))
            got = {k: metric(s, "vid_http_requests_total", stream=key, kind=k) - base[k] for k in counted}
            raise AssertionError(f"counted by clients {counted}, by vid {got}")
        assert metric(samples, "vid_http_error_responses_total", stream=key, status="404") - base_404 == statuses[404]
        assert metric(samples, "vid_http_error_responses_total", stream=key, status="400") == statuses[400]
        assert metric(samples, "vid_http_response_bytes_total", stream=key) - base_bytes == body_bytes
        assert metric(samples, "vid_stream_live", stream=key) == 1
        assert metric(samples, "vid_stream_publishes_total", stream=key) == 1
        assert metric(samples, "vid_stream_ingest_frames_total", stream=key) > 30
        assert metric(samples, "vid_stream_segments_total", stream=key) >= 1
        assert metric(samples, "vid_stream_parts_total", stream=key) > metric(samples, "vid_stream_segments_total", stream=key)
        assert metric(samples, "vid_stream_last_frame_age_seconds", stream=key) < 5
        assert metric(samples, "vid_stream_held_requests", stream=key) == 0
        assert metric(samples, "vid_zone_slots", state="used") == 1
        assert metric(samples, "vid_zone_slots", state="free") > 0
        # The publisher, and the harness's own readiness probe of the RTMP port.
        assert metric(samples, "vid_rtmp_connections_total") >= 1
        assert metric(samples, "vid_render_cache_lookups_total") >= 1
        assert ("vid_worker_held_requests", frozenset({("worker", "1")})) in samples
        promtool_check(scrape(vid))
        # nginx's stub_status works beside it (what nginx-prometheus-exporter reads).
        stub = vid.get("/stub_status")
        assert stub.status == 200 and re.match(r"Active connections: \d+", stub.text), stub.text

        # The access log: the kind, MSN and part asked for, and the wait of held requests.
        lines = (vid.prefix / "logs" / "hls_access.log").read_text().splitlines()
        # The blocking reload waited for the next segment (about one segment, 1 s).
        blocking = [l for l in lines if f"_HLS_msn={next_msn + 1}&" in l]
        assert blocking and f"stream={key} kind=blocking msn={next_msn + 1} part=0 wait=" in blocking[0], blocking
        wait = float(re.search(r"wait=(\S+)", blocking[0]).group(1))
        assert 0.05 <= wait < 10, blocking[0]
        hinted = [l for l in lines if f"/{hint} " in l]
        assert hinted and f"kind=part msn={next_msn} part={next_part} wait=" in hinted[0], hinted
        seg_line = [l for l in lines if f"/{seg} " in l][0]
        assert f"kind=segment msn={seg.split('.')[0]} part=- wait=-" in seg_line

        # Status API: live, bit rate, last frame, viewers, publisher.
        st = json.loads(vid.get("/streams.json").text)["streams"][0]
        assert st["key"] == key and st["state"] == "live"
        s = st["status"]
        assert s["ingest_bitrate"] > 10_000
        assert 0 <= s["last_frame_age"] < 5
        assert s["viewers"] >= 1
        assert s["publisher"]["address"] == "127.0.0.1"
        assert s["publisher"]["software"].startswith("FMLE/3.0 (compatible; Lavf")
    finally:
        pub.kill()
        pub.wait()


def test_viewer_estimate_and_refusals(vid):
    """Distinct playlist clients (address + User-Agent) are estimated; a bad key counts
    as a refusal for that reason."""
    key = "viewers"
    pub = publish(vid.rtmp_url(key), seconds=30)
    try:
        live_playlist(vid, key)
        for i in range(40):
            for _ in range(3):  # the same client, several reloads: still one viewer
                assert vid.get(f"/live/{key}/index.m3u8", headers={"User-Agent": f"viewer-{i}"}).status == 200
        st = json.loads(vid.get("/streams.json").text)["streams"][0]["status"]
        # 40 test clients + the helper's own requests (urllib's default User-Agent).
        assert 38 <= st["viewers"] <= 44, st
        conns = metric(parse_metrics(scrape(vid)), "vid_rtmp_connections_total")
        bad = subprocess.run([DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                              "testsrc2=size=160x120:rate=10", "-t", "1", "-c:v", "libx264", "-f", "flv",
                              vid.rtmp_url("bad.key")], capture_output=True, timeout=30)
        assert bad.returncode is not None
        s = wait_for(lambda: (lambda s: s if metric(s, "vid_rtmp_refusals_total", reason="bad_key") == 1 else None)(
            parse_metrics(scrape(vid))), 10, what="bad_key refusal")
        assert metric(s, "vid_rtmp_connections_total") == conns + 1
    finally:
        pub.kill()
        pub.wait()


class Prometheus:
    def __init__(self, target_port):
        self.dir = Path(tempfile.mkdtemp(prefix="vid-prom-"))
        self.port = free_port()
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: vid\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self.ready, 60, step=0.5, what="prometheus to start")

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited: " + self.proc.stderr.read().decode()[-2000:])
        try:
            return http(f"http://127.0.0.1:{self.port}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def query(self, q):
        r = http(f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        assert r.status == 200, r.text
        res = json.loads(r.text)["data"]["result"]
        return [float(x["value"][1]) for x in res]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_scrapes_ingest_rate_and_counters_survive_reload(vid_factory):
    """A real Prometheus scrapes vid every second: the PromQL ingest rate of a live stream
    is within 10 % of the publisher's own bit rate (ffmpeg's -progress byte count); after
    `nginx -s reload` the counters keep rising (no reset seen by Prometheus)."""
    if not PROMETHEUS:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    vid = vid_factory(workers=2)
    key = "promrate"
    # Constant bit rate, so that any window has the same rate.
    cmd = [DEBIAN_FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "60",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
           "-b:v", "1500k", "-minrate", "1500k", "-maxrate", "1500k", "-bufsize", "750k",
           "-x264-params", "nal-hrd=cbr:force-cfr=1", "-progress", "pipe:1", "-f", "flv", vid.rtmp_url(key)]
    pub = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    progress = []  # (monotonic time, total_size bytes)

    def read_progress():
        for line in pub.stdout:
            if line.startswith("total_size="):
                try:
                    progress.append((time.monotonic(), int(line.split("=")[1])))
                except ValueError:
                    pass
    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    prom = Prometheus(vid.http_port)
    try:
        live_playlist(vid, key)
        time.sleep(14)  # 10 s window of scrapes with the stream running
        window = 10
        q = f'rate(vid_stream_ingest_bytes_total{{stream="{key}"}}[{window}s]) * 8'
        got = wait_for(lambda: prom.query(q), 20, step=1, what="a PromQL result")[0]
        now = time.monotonic()
        recent = [(t, b) for t, b in progress if now - t <= window + 1]
        assert len(recent) >= 2, progress[-5:]
        sent_bps = (recent[-1][1] - recent[0][1]) * 8 / (recent[-1][0] - recent[0][0])
        assert abs(got - sent_bps) <= 0.10 * sent_bps, f"PromQL {got:.0f} b/s, publisher {sent_bps:.0f} b/s"
        # The gauge and the status API agree with it too.
        gauge = prom.query(f'vid_stream_ingest_bytes_per_second{{stream="{key}"}} * 8')[0]
        assert abs(gauge - sent_bps) <= 0.15 * sent_bps, (gauge, sent_bps)

        # Reload: new workers, the same shared counters; the publisher stays on its worker.
        before = parse_metrics(scrape(vid))
        for _ in range(5):
            vid.get(f"/live/{key}/index.m3u8")
        old = vid.worker_pids()
        vid.reload()
        wait_for(lambda: vid.worker_pids() and not set(vid.worker_pids()) & set(old), 20, what="new workers")
        for _ in range(5):
            vid.get(f"/live/{key}/index.m3u8")
        time.sleep(3)
        after = parse_metrics(scrape(vid))
        for name, labels in [("vid_stream_ingest_bytes_total", {"stream": key}),
                             ("vid_stream_ingest_frames_total", {"stream": key}),
                             ("vid_stream_parts_total", {"stream": key}),
                             ("vid_http_requests_total", {"stream": key, "kind": "playlist"})]:
            b, a = metric(before, name, **labels), metric(after, name, **labels)
            assert a > b > 0, f"{name}: {b} before reload, {a} after"
        assert metric(after, "vid_http_requests_total", stream=key, kind="playlist") >= \
            metric(before, "vid_http_requests_total", stream=key, kind="playlist") + 10
        time.sleep(2)
        resets = prom.query(f'resets(vid_stream_ingest_bytes_total{{stream="{key}"}}[1m])')
        assert resets == [0.0], resets
    finally:
        prom.stop()
        pub.kill()
        pub.wait()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_player_page_shows_status_and_ingest_chart(vid):
    """The player page, in headless Chromium, lists the stream with its status, viewers
    and an SVG chart of the ingest bit rate drawn from the status API."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed")
    key = "pagestatus"
    pub = publish(vid.rtmp_url(key), seconds=30)
    try:
        live_playlist(vid, key)
        with tempfile.TemporaryDirectory(prefix="vid-chromium-") as profile:
            p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                                "--virtual-time-budget=9000", "--dump-dom", vid.url("/")],
                               capture_output=True, text=True, timeout=90)
        dom = p.stdout
        row = re.search(rf'<tr data-key="{key}".*?</tr>', dom, re.S)
        assert row, dom[-3000:]
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
        assert re.sub(r"<[^>]+>", "", cells[5]) == "live", cells[5]
        assert cells[6].isdigit(), cells[6]
        # The chart: a line through several samples of a non-zero bit rate.
        line = re.search(r'<polyline points="([^"]+)" class="chart-line"', cells[7])
        assert line, cells[7]
        assert len(line.group(1).split()) >= 3
        assert "kbit/s" in cells[7] or "Mbit/s" in cells[7]
    finally:
        pub.kill()
        pub.wait()
