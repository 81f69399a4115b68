"""Integration harness: a real nginx with the vid module, real ffmpeg publishers.

Every test gets fresh ports and a fresh prefix; nginx runs in the foreground under the
test's control and is stopped (and checked for crashed workers) afterwards.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NGINX = ROOT / "build" / "sbin" / "nginx"
MODULE = ROOT / "build" / "modules" / "libvid.so"
DEBIAN_FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"


def modern_ffmpeg():
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # pragma: no cover - reported by the skip
        pytest.skip(f"imageio-ffmpeg not available: {e}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, step=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8")


def http(url, method="GET", headers=None, timeout=10, body=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


class Vid:
    """One nginx+vid origin."""

    # access_log=True: one line per request in logs/access.log (for tests that count
    # what reaches an origin, e.g. through CDN edges).
    ACCESS_LOG = ('log_format vid_origin \'$msec "$request_uri" $status $bytes_sent $request_time '
                  'edge=$http_x_vid_edge\';\n    access_log logs/access.log vid_origin;\n')

    def __init__(self, workers=1, segment="1s", part="200ms", window=6, extra_env=None, stream_extra="",
                 ts=False, access_log=False, live_extra=""):
        """stream_extra: directives inserted into the RTMP server block of stream{}
        (e.g. "rtmp_live_timeout 3s;")."""
        self.prefix = Path(tempfile.mkdtemp(prefix="vid-test-"))
        os.chmod(self.prefix, 0o755)  # workers run as nobody when the tests run as root
        for d in ("conf", "logs", "media"):
            (self.prefix / d).mkdir()
        os.chmod(self.prefix / "media", 0o1777)
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.workers = workers
        # WHIP media: UDP port whip_port + worker number.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            self.whip_port = u.getsockname()[1]
        env = dict(os.environ, HLS_SEGMENT=segment, HLS_PART=part, HLS_WINDOW=str(window), HLS_TS="on" if ts else "off",
                   WHIP_UDP=f"127.0.0.1:{self.whip_port}")
        conf = subprocess.run(
            [str(ROOT / "scripts" / "render-conf.sh"), str(self.prefix), str(self.rtmp_port), str(self.http_port), str(workers)],
            check=True, capture_output=True, text=True, env=env,
        ).stdout
        if stream_extra:
            anchor = "rtmp_live live;"
            assert anchor in conf, "rendered config has no rtmp_live line"
            conf = conf.replace(anchor, f"{anchor}\n        {stream_extra}", 1)
        if access_log:
            conf = conf.replace("\nhttp {\n", "\nhttp {\n    " + self.ACCESS_LOG, 1)
        if live_extra:
            # Directives for the `location /live/` block.
            anchor = "hls_live on;                # http://HOST:8080/live/"
            assert anchor in conf
            conf = conf.replace("            hls_live on;                # http://HOST:8080/live/",
                                f"            {live_extra}\n            hls_live on;                # http://HOST:8080/live/", 1)
        (self.prefix / "conf" / "nginx.conf").write_text(conf)
        self.proc = None

    def nginx(self, *args, check=True):
        return subprocess.run(
            [str(NGINX), "-p", str(self.prefix), "-c", "conf/nginx.conf", "-e", "logs/error.log", *args],
            capture_output=True, text=True, check=check, timeout=30,
        )

    def start(self):
        self.proc = subprocess.Popen(
            [str(NGINX), "-p", str(self.prefix), "-c", "conf/nginx.conf", "-e", "logs/error.log", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        wait_for(self._listening, 10, what="nginx to listen")
        wait_for(lambda: len(self.worker_pids()) >= self.workers, 10, what="workers")
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited: {self.proc.stderr.read().decode()}\n{self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
            socket.create_connection(("127.0.0.1", self.rtmp_port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def worker_pids(self):
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(self.proc.pid)], capture_output=True, text=True).stdout
        return sorted(int(l.split()[0]) for l in out.splitlines() if "worker process" in l and "shutting down" not in l)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def access_log(self):
        """Lines of logs/access.log (needs access_log=True)."""
        p = self.prefix / "logs" / "access.log"
        return p.read_text(errors="replace").splitlines() if p.exists() else []

    def log(self):
        p = self.prefix / "logs" / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def crashes(self):
        """Worker exits on a signal, as nginx's master logs them."""
        return re.findall(r".*exited on signal.*", self.log())

    def rtmp_url(self, key, app="live"):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{key}"

    def url(self, path):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def playlist_url(self, key):
        return self.url(f"/live/{key}/index.m3u8")

    def get(self, path, **kw):
        return http(self.url(path), **kw)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)


@pytest.fixture
def vid_factory():
    made = []

    def make(**kw):
        v = Vid(**kw).start()
        made.append(v)
        return v

    yield make
    for v in made:
        v.stop()
        crashes = v.crashes()
        log = v.log()
        v.cleanup()
        assert not crashes, f"worker crashed: {crashes}"
        assert "[alert]" not in log and "[emerg]" not in log, log[-4000:]


@pytest.fixture
def vid(vid_factory):
    return vid_factory()


def publish(url, seconds=20, ffmpeg=None, video=True, audio=True, size="640x360", rate=30, gop=30,
            vcodec="libx264", bframes=0, extra=()):
    """Start a real ffmpeg publisher with synthetic A/V; returns the Popen."""
    ffmpeg = ffmpeg or DEBIAN_FFMPEG
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-t", str(seconds)]
    if video:
        cmd += ["-c:v", vcodec, "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p"]
        if vcodec == "libx264":
            cmd += ["-tune", "zerolatency"] if bframes == 0 else ["-bf", str(bframes)]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "96k"]
    cmd += list(extra) + ["-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def parse_playlist(text):
    """A deliberately small reading of a media playlist, for assertions on our output.
    Independent checks use ffprobe/ffmpeg and the npm m3u8-parser (tests/tools)."""
    tags = {}
    segments = []
    cur = {}
    for line in text.splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            tags["target"] = int(line.split(":")[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            tags["msn"] = int(line.split(":")[1])
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            tags["dsn"] = int(line.split(":")[1])
        elif line.startswith("#EXT-X-VERSION:"):
            tags["version"] = int(line.split(":")[1])
        elif line == "#EXT-X-ENDLIST":
            tags["endlist"] = True
        elif line == "#EXT-X-DISCONTINUITY":
            cur["disc"] = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            cur["pdt"] = line.split(":", 1)[1]
        elif line.startswith("#EXT-X-MAP:"):
            cur["map"] = re.search(r'URI="([^"]+)"', line).group(1)
        elif line.startswith("#EXTINF:"):
            cur["dur"] = float(line[8:].split(",")[0])
        elif line and not line.startswith("#"):
            cur["uri"] = line
            segments.append(cur)
            cur = {}
    tags["segments"] = segments
    tags.setdefault("dsn", 0)
    return tags


def ffprobe_json(path_or_url, *args):
    out = subprocess.run([FFPROBE, "-v", "error", "-of", "json", *args, str(path_or_url)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="session")
def m3u8():
    """parse(text) -> m3u8-parser's manifest (dict); installs the npm packages once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not installed (scripts/deps.sh test installs them)")
    if not (Path(__file__).resolve().parent / "node_modules" / "m3u8-parser").is_dir():
        r = subprocess.run([npm, "ci", "--prefix", str(Path(__file__).resolve().parent), "--no-audit", "--no-fund"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout}\n{r.stderr}"

    def parse(text):
        r = subprocess.run([node, str(Path(__file__).resolve().parent / "tools" / "parse-m3u8.js")], input=text, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    return parse
