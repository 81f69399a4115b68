"""Chaos, as repeatable tests: what a flaky machine or a hostile client does to a running
origin. Each case runs with a second stream beside the one under attack and asserts that
nothing listed is lost (every segment a playlist listed before the event is still served)
and that the other stream is unaffected.

- wall-clock steps of +100 s and -100 s (libfaketime, Debian `faketime`, with
  FAKETIME_DONT_FAKE_MONOTONIC=1: a real NTP step moves the wall clock and leaves
  CLOCK_MONOTONIC alone);
- kill -9 of the worker that holds a publisher;
- a flood of silent sockets against a small worker_connections.
"""

import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from conftest import publish, wait_for
from test_lifecycle import FAKETIME_LIB, kill, last_msn, life_factory, playlist, wait_advance, wait_segments  # noqa: F401


def listed(vid, key):
    """The media a playlist lists right now: (segment and init URIs)."""
    pl = playlist(vid, key)
    assert pl, f"no playlist for {key}"
    uris = {s["uri"] for s in pl["segments"]} | {s["map"] for s in pl["segments"] if s.get("map")}
    return pl, uris


def assert_served(vid, key, uris):
    missing = [u for u in sorted(uris) if vid.get(f"/live/{key}/{u}").status != 200]
    assert not missing, f"{key}: listed media lost: {missing}"


def worker_of(vid, key):
    """The pid of the worker that logged the start of `key`'s (latest) publish."""
    pid = None
    for line in vid.log().splitlines():
        if f'/{key}" started' in line:
            pid = int(line.split("[notice] ")[1].split("#")[0])
    return pid


# ------------------------------------------------------------------ wall-clock steps

@pytest.mark.skipif(not FAKETIME_LIB.exists(), reason="libfaketime not installed (scripts/deps.sh)")
def test_wall_clock_steps(life_factory):
    # Readable by the workers, which run as nobody when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="vid-faketime-"))
    folder.chmod(0o755)
    stamp = folder / "faketime"
    stamp.write_text("+0\n")
    stamp.chmod(0o644)
    env = dict(os.environ, LD_PRELOAD=str(FAKETIME_LIB), FAKETIME_TIMESTAMP_FILE=str(stamp),
               FAKETIME_CACHE_DURATION="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
    keep = "".join(f"env {k};\n" for k in ("LD_PRELOAD", "FAKETIME_TIMESTAMP_FILE", "FAKETIME_CACHE_DURATION",
                                           "FAKETIME_DONT_FAKE_MONOTONIC"))
    # Takeover off: a second publisher is refused unless the first looks stale, which is
    # what a wall-clock step used to fake.
    vid = life_factory(workers=2, env=env, main_extra=keep, stream_extra="rtmp_live_takeover off;")
    pub = publish(vid.rtmp_url("clock"), seconds=60)
    other = publish(vid.rtmp_url("other"), seconds=60, size="320x240")
    try:
        wait_segments(vid, "clock", 2)
        wait_segments(vid, "other", 2)
        for step in ("+100", "-100", "+0"):
            _, before = listed(vid, "clock")
            _, before_other = listed(vid, "other")
            stamp.write_text(step + "\n")
            time.sleep(2.5)  # libfaketime re-reads the file once a second
            assert_served(vid, "clock", before)
            assert_served(vid, "other", before_other)
            for key in ("clock", "other"):
                wait_advance(vid, key)
                wait_advance(vid, key)
            # Nobody else may claim the key.
            dup = publish(vid.rtmp_url("clock"), seconds=3)
            assert dup.wait(30) != 0, f"a second publisher took the key after a {step} s clock step"
            assert pub.poll() is None and other.poll() is None, "a publisher was cut off"
        log = vid.log()
        assert "taken over" not in log, log[-3000:]
        assert log.count('stream "clock" is already being published') == 3, log[-3000:]
        # nginx did see the steps: its log (wall-clock stamps) jumped ahead and back.
        stamps = [time.mktime(time.strptime(line[:19], "%Y/%m/%d %H:%M:%S")) for line in log.splitlines()
                  if line[:4].isdigit() and "already being published" in line]
        assert stamps[0] - time.time() > 60, (stamps, log[-3000:])
        assert stamps[1] < stamps[0] - 150, stamps
    finally:
        kill(pub)
        kill(other)
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ kill -9 of a publishing worker

def test_kill_publishing_worker(life_factory):
    """The stream whose worker died ends (ENDLIST) within its grace period plus a second,
    with everything it listed still served; a stream on the other worker goes on."""
    vid = life_factory(workers=2, segment="1s", part="200ms", window=6)
    pub = publish(vid.rtmp_url("crash"), seconds=60)
    other = None
    try:
        wait_segments(vid, "crash", 2)
        pid = wait_for(lambda: worker_of(vid, "crash"), 10, what="publish log line")
        # Another stream on the other worker (a connection lands on either).
        key = None
        for n in range(12):
            other = publish(vid.rtmp_url(f"other{n}"), seconds=60, size="320x240")
            wait_for(lambda: worker_of(vid, f"other{n}"), 15, what="publish log line")
            if worker_of(vid, f"other{n}") != pid:
                key = f"other{n}"
                break
            kill(other)
        else:
            pytest.skip("every connection landed on the same worker")
        wait_segments(vid, key, 2)
        _, before = listed(vid, "crash")
        _, before_other = listed(vid, key)
        vid.allow_killed = (pid,)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        pl = wait_for(lambda: (lambda p: p if p and p.get("endlist") else None)(playlist(vid, "crash")),
                      15, what="ENDLIST after the owner died")
        took = time.monotonic() - killed
        print(f"\nkill -9 of the publishing worker: ENDLIST after {took:.1f} s (grace 3 s)")
        assert took < 10
        # Nothing listed is lost: what was listed before the crash, and the segment that
        # was being built when it happened (sealed from its listed parts).
        assert_served(vid, "crash", before | {s["uri"] for s in pl["segments"]})
        wait_advance(vid, key)
        assert_served(vid, key, before_other)
        assert not playlist(vid, key).get("endlist")
    finally:
        kill(pub)
        if other:
            kill(other)


# ------------------------------------------------------------------ idle-socket flood

def test_silent_socket_flood(life_factory):
    """600 silent sockets against worker_connections 256: viewers get through again once
    the handshake deadline has closed them; the stream goes on, nothing listed is lost."""
    vid = life_factory(stream_extra="rtmp_live_handshake_timeout 2s;", events_extra="worker_connections 256;",
                       allow_alerts=("worker_connections are not enough",))
    pub = publish(vid.rtmp_url("flood"), seconds=40)
    socks = []
    try:
        wait_segments(vid, "flood", 2)
        _, before = listed(vid, "flood")
        for _ in range(600):
            try:
                socks.append(socket.create_connection(("127.0.0.1", vid.rtmp_port), timeout=1))
            except OSError:
                break
        t0 = time.monotonic()

        def viewer_ok():
            try:
                return vid.get("/live/flood/index.m3u8", timeout=1).status == 200
            except OSError:
                return False

        wait_for(viewer_ok, 15, step=0.2, what="a viewer to get the playlist during the flood")
        waited = time.monotonic() - t0
        print(f"\nflood: {len(socks)} silent sockets; a viewer got through after {waited:.1f} s (deadline 2 s)")
        assert waited < 8
        # The flood ends (sockets still queued in the listen backlog would keep taking the
        # freed connection slots for a few more deadlines); the stream must have gone on.
        for s in socks:
            s.close()
        socks = []
        wait_advance(vid, "flood")
        assert_served(vid, "flood", before)
        assert pub.poll() is None, "the publisher was cut off"
    finally:
        for s in socks:
            s.close()
        kill(pub)
