"""Chaos, as repeatable tests: what a flaky machine or a hostile client does to a running
origin. Each case runs with a second stream beside the one under attack and asserts that
nothing listed is lost (every segment a playlist listed before the event is still served)
and that the other stream is unaffected.

- wall-clock steps of +100 s and -100 s (libfaketime, Debian `faketime`, with
  FAKETIME_DONT_FAKE_MONOTONIC=1: a real NTP step moves the wall clock and leaves
  CLOCK_MONOTONIC alone);
- kill -9 of the worker that holds a publisher, and of one that only serves viewers;
- the zone lock held by a dying worker (stopped by gdb inside the lock, then killed);
- a reload storm with 200 LL-HLS clients;
- ENOSPC on the media path (a small tmpfs);
- a full zone (more publishers than stream slots);
- a flood of held requests whose clients vanish;
- a flood of silent sockets against a small worker_connections.
"""

import asyncio
import collections
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import publish, wait_for
from test_cdn import HINT, Conn
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


def publish_on_other_worker(vid, owner, prefix, seconds):
    """A publisher whose connection landed on a worker other than OWNER (a connection
    lands on either): (key, process). Skips the test if none does in 12 tries."""
    for n in range(12):
        key = f"{prefix}{n}"
        proc = publish(vid.rtmp_url(key), seconds=seconds, size="320x240")
        wait_for(lambda: worker_of(vid, key), 15, what="publish log line")
        if worker_of(vid, key) != owner:
            return key, proc
        kill(proc)
    pytest.skip("every connection landed on the same worker")


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
        # Another stream on the other worker.
        key, other = publish_on_other_worker(vid, pid, "other", 60)
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


# ------------------------------------------------------------------ LL-HLS clients

async def ll_viewer(port, key, until, stats, go):
    """Follows the live edge as hls.js does: keep-alive, a blocking reload for the next
    part and a GET of the hinted part, together. A connection a worker closes (it exited
    or was killed) is reopened, as a player does; everything else answered is counted."""
    pl, pt = Conn(port, stats), Conn(port, stats)
    base = f"/live/{key}/"
    await go.wait()
    body = None
    try:
        while time.monotonic() < until:
            try:
                if body is None:
                    status, _, body = await pl.get(base + "index.m3u8")
                    stats["status"][status] += 1
                    if status != 200:
                        stats["errors"].append(("playlist", status))
                        body = None
                        await asyncio.sleep(0.2)
                        continue
                m = HINT.search(body.decode())
                if not m:
                    stats["errors"].append(("no preload hint", body[-200:]))
                    return
                msn, part = m.groups()
                (s1, _, b1), (s2, _, _) = await asyncio.gather(
                    pl.get(f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}"), pt.get(f"{base}{msn}.{part}.m4s"))
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
                stats["reopened"] += 1
                pl.close()
                pt.close()
                body = None
                await asyncio.sleep(0.05)
                continue
            stats["status"][s1] += 1
            stats["status"][s2] += 1
            if s1 != 200 or s2 != 200:
                stats["errors"].append((msn, part, s1, s2))
                body = None
                continue
            stats["parts"].add((int(msn), int(part)))
            body = b1
    except Exception as e:  # reported by the test
        stats["errors"].append(repr(e))
    finally:
        pl.close()
        pt.close()


class Viewers:
    """N LL-HLS viewers of KEY in a thread of their own for SECONDS."""

    def __init__(self, vid, key, n, seconds):
        self.stats = {"requests": 0, "bytes": 0, "retries": 0, "reopened": 0, "errors": [],
                      "status": collections.Counter(), "parts": set()}

        async def main():
            go = asyncio.Event()
            until = time.monotonic() + seconds
            tasks = [asyncio.create_task(ll_viewer(vid.http_port, key, until, self.stats, go)) for _ in range(n)]
            await asyncio.sleep(0.05)
            go.set()
            await asyncio.gather(*tasks)

        self.thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self.thread.start()

    def join(self, timeout):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "viewers did not finish"
        return self.stats


def served_ok(vid, path="/live/{}/index.m3u8", key=None, timeout=1):
    try:
        return vid.get(path.format(key), timeout=timeout).status == 200
    except OSError:
        return False


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def held_requests(vid, key):
    """Held requests for KEY in all workers, from /metrics."""
    text = vid.get("/metrics").text
    return sum(float(m) for m in re.findall(rf'^vid_stream_held_requests\{{stream="{key}"[^}}]*\}} (\S+)$', text, re.M))


# ------------------------------------------------------------------ kill -9 of a serving worker

def test_kill_serving_worker(life_factory):
    """kill -9 of a worker that holds no publisher while it serves LL-HLS viewers: the
    master starts another, viewers reconnect and go on, the stream never stops."""
    vid = life_factory(workers=2)
    # reuseport: viewers' connections spread over both workers, so some are on the victim.
    conf = vid.prefix / "conf" / "nginx.conf"
    listen = f"listen 127.0.0.1:{vid.http_port};"
    conf.write_text(conf.read_text().replace(listen, listen[:-1] + " reuseport;", 1))
    old = vid.worker_pids()
    vid.reload()
    wait_for(lambda: len(vid.worker_pids()) == 2 and not set(old) & set(vid.worker_pids()), 15,
             what="the reloaded workers")
    pub = publish(vid.rtmp_url("serve"), seconds=60)
    try:
        wait_segments(vid, "serve", 2)
        owner = wait_for(lambda: worker_of(vid, "serve"), 10, what="publish log line")
        victim = next(p for p in vid.worker_pids() if p != owner)
        viewers = Viewers(vid, "serve", 40, 14)
        time.sleep(4)
        _, before = listed(vid, "serve")
        vid.allow_killed = (victim,)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in vid.worker_pids() and len(vid.worker_pids()) == 2, 10,
                 what="the master to replace the killed worker")
        assert_served(vid, "serve", before)
        stats = viewers.join(30)
        print(f"\nkill -9 of a serving worker: {stats['requests']} requests, {stats['reopened']} connections "
              f"reopened, {stats['retries']} requests retried, statuses {dict(stats['status'])}")
        assert not stats["errors"], stats["errors"][:10]
        assert set(stats["status"]) == {200}
        # Viewers of the killed worker lost their connections and went on over new ones.
        assert stats["reopened"] + stats["retries"] > 0
        # Viewers went on past the kill: they saw the parts of at least 6 more seconds.
        assert len({m for m, _ in stats["parts"]}) >= 6, sorted(stats["parts"])
        assert pub.poll() is None, "the publisher was cut off"
        assert worker_of(vid, "serve") == owner
        wait_advance(vid, "serve")
        assert_served(vid, "serve", listed(vid, "serve")[1])
    finally:
        kill(pub)


# ------------------------------------------------------------------ zone lock held by a dying worker

GDB = shutil.which("gdb")


def kill_holding_the_lock(pid):
    """Stop worker PID with gdb where it is about to release a shared-memory lock (at the
    entry of ngx_shmtx_unlock: the lock is still held) and kill -9 it there."""
    out = subprocess.run([GDB, "-q", "-nx", "-batch", "-p", str(pid),
                          "-ex", "break ngx_shmtx_unlock", "-ex", "continue",
                          "-ex", f"shell kill -9 {pid}", "-ex", "continue"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


@pytest.mark.skipif(not GDB, reason="gdb not installed (scripts/deps.sh)")
def test_zone_lock_held_by_a_dying_worker(life_factory):
    """A worker killed while it holds the zone's lock, as the publishing worker and as a
    serving worker: nginx's master force-unlocks the zone (and says so), the
    zone answers at once, the stream goes on with nothing listed lost, and the key can be
    published again."""
    vid = life_factory(workers=2, segment="1s", part="200ms",
                       allow_alerts=('shared memory zone "live" was locked by',))
    pub = publish(vid.rtmp_url("lock"), seconds=120)
    other = viewers = None
    try:
        wait_segments(vid, "lock", 2)
        owner = wait_for(lambda: worker_of(vid, "lock"), 10, what="publish log line")
        # A stream on the other worker, which is never killed.
        keep, other = publish_on_other_worker(vid, owner, "keep", 120)
        wait_segments(vid, keep, 2)
        viewers = Viewers(vid, keep, 20, 40)
        killed = []
        for n in range(2):
            # First the worker that publishes "lock", then the one that took its place
            # (it only serves viewers).
            victim = next(p for p in vid.worker_pids() if p != worker_of(vid, keep))
            _, before = listed(vid, keep)
            killed.append(victim)
            vid.allow_killed = tuple(killed)
            trace = kill_holding_the_lock(victim)
            assert "Breakpoint 1, ngx_shmtx_unlock" in trace, trace[-2000:]
            wait_for(lambda: f'shared memory zone "live" was locked by {victim}' in vid.log(), 10,
                     what="the master to force-unlock the zone")
            wait_for(lambda: len(vid.worker_pids()) == 2 and victim not in vid.worker_pids(), 10,
                     what="the master to replace the killed worker")
            # The zone is not left locked: requests that take its lock are answered.
            t0 = time.monotonic()
            wait_for(lambda: served_ok(vid, key=keep), 5, step=0.05, what="the zone to answer")
            assert time.monotonic() - t0 < 2
            assert vid.get("/streams.json").status == 200
            wait_advance(vid, keep)
            assert_served(vid, keep, before)
            assert worker_of(vid, keep) not in killed
        print(f"\nzone lock: {len(killed)} workers killed holding the lock, each force-unlocked by the master")
        stats = viewers.join(60)
        assert not stats["errors"], stats["errors"][:10]
        assert set(stats["status"]) == {200}, stats["status"]
        # "lock" lost its publisher with its worker: it is published again.
        kill(pub)
        pub = publish(vid.rtmp_url("lock"), seconds=30)
        wait_for(lambda: (lambda p: p if p and not p.get("endlist") and len(p["segments"]) else None)(
            playlist(vid, "lock")), 20, step=0.2, what="the key to be published again")
        wait_advance(vid, "lock")
        assert other.poll() is None, "the other stream's publisher was cut off"
    finally:
        kill(pub)
        if other:
            kill(other)
        if viewers:
            viewers.thread.join(60)


# ------------------------------------------------------------------ reload storm with 200 LL clients

def test_reload_storm_with_ll_clients(life_factory):
    """10 reloads in 3 s while 200 LL-HLS clients follow the stream: every answer is a 200,
    clients whose connection an exiting worker closed reconnect and go on, nothing listed is
    lost and the publisher stays connected."""
    vid = life_factory(workers=2)
    pub = publish(vid.rtmp_url("storm"), seconds=60)
    try:
        wait_segments(vid, "storm", 2)
        viewers = Viewers(vid, "storm", 200, 16)
        time.sleep(4)
        _, before = listed(vid, "storm")
        for _ in range(10):
            vid.reload()
            time.sleep(0.3)
        assert_served(vid, "storm", before)
        stats = viewers.join(60)
        print(f"\nreload storm: {stats['requests']} requests by 200 LL clients, {stats['reopened']} connections "
              f"reopened, {stats['retries']} retried, statuses {dict(stats['status'])}")
        assert not stats["errors"], stats["errors"][:10]
        assert set(stats["status"]) == {200}
        assert len({m for m, _ in stats["parts"]}) >= 7, sorted(stats["parts"])
        assert pub.poll() is None, "the publisher was cut off"
        wait_advance(vid, "storm")
        assert_served(vid, "storm", listed(vid, "storm")[1])
        log = vid.log()
        assert "taken over" not in log and "already being published" not in log, log[-3000:]
    finally:
        kill(pub)


# ------------------------------------------------------------------ ENOSPC

def test_enospc_on_the_media_path(life_factory):
    """The media path fills up: the publisher is closed with a clear log line, every
    segment listed before is still served, no worker dies, and once there is room again the
    key is published again."""
    vid = life_factory(workers=2)
    media = vid.prefix / "media"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=1777", "tmpfs", str(media)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    filler = media / "filler"
    pub = other = None
    try:
        pub = publish(vid.rtmp_url("full"), seconds=60)
        wait_segments(vid, "full", 2)
        _, before = listed(vid, "full")
        # Fill the file system.
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True)
        wait_for(lambda: pub.poll() is not None, 15, what="the publisher to be closed")
        log = wait_for(lambda: (lambda l: l if "No space left on device" in l else None)(vid.log()), 5,
                       what="the storage error in the log")
        assert re.search(r"\[error\].*rtmp: closing connection: storage error: No space left on device", log), log[-3000:]
        assert 'publish "live/full" ended' in log, log[-3000:]
        assert_served(vid, "full", before)
        # The stream ends after its grace period, with what it listed still served.
        pl = wait_for(lambda: (lambda p: p if p and p.get("endlist") else None)(playlist(vid, "full")), 15,
                      what="ENDLIST")
        assert_served(vid, "full", before & ({s["uri"] for s in pl["segments"]} |
                                             {s["map"] for s in pl["segments"] if s.get("map")}))
        # Room again: the key is published again.
        filler.unlink()
        other = publish(vid.rtmp_url("full"), seconds=30)
        wait_for(lambda: (lambda p: p if p and not p.get("endlist") else None)(playlist(vid, "full")), 20,
                 step=0.2, what="the key to be published again")
        wait_advance(vid, "full")
        assert not vid.crashes()
    finally:
        for p in (pub, other):
            if p:
                kill(p)
        vid.stop()
        subprocess.run(["umount", "-l", str(media)], capture_output=True)


# ------------------------------------------------------------------ a full zone

def test_full_zone(life_factory):
    """More publishers than the zone has stream slots: each one past the last slot is
    refused with a log line and a clean close, the streams that have a slot go on, and an
    ended stream's slot is taken by the next publisher."""
    vid = life_factory(workers=2, replace=[("hls_live_zone live 64m;", "hls_live_zone live 64k;")])
    pubs = {}
    try:
        # How many slots 64 KiB (the smallest zone) holds depends on the slot size; publish
        # until refused.
        for n in range(12):
            key = f"z{n}"
            pubs[key] = publish(vid.rtmp_url(key), seconds=60, size="160x120")
            try:
                wait_for(lambda: playlist(vid, key) or pubs[key].poll() is not None, 20, step=0.2,
                         what=f"{key} to be listed or refused")
            except AssertionError:
                raise
            if pubs[key].poll() is not None:
                break
        refused = key
        live = [k for k in pubs if k != refused]
        assert live, "not even one stream fits"
        assert pubs[refused].poll() is not None, "no publisher was refused"
        assert "no room for another stream in the zone" in vid.log(), vid.log()[-3000:]
        print(f"\nfull zone: {len(live)} streams in 64 KiB, the next refused")
        for k in live:
            wait_segments(vid, k, 2)
        befores = {k: listed(vid, k)[1] for k in live}
        # A second refusal changes nothing either.
        again = publish(vid.rtmp_url("zextra"), seconds=5, size="160x120")
        assert again.wait(20) != 0
        for k in live:
            wait_advance(vid, k)
            assert_served(vid, k, befores[k])
            assert pubs[k].poll() is None
        # A stream ends; once its slot is free (after the grace and the removal of its
        # media), the refused key gets it.
        kill(pubs[live[0]])
        wait_for(lambda: (lambda p: p is None or p.get("endlist"))(playlist(vid, live[0])), 15, what="ENDLIST")

        def retry():
            p = publish(vid.rtmp_url(refused), seconds=30, size="160x120")
            try:
                wait_for(lambda: playlist(vid, refused) or p.poll() is not None, 20, step=0.2, what="listed")
            except AssertionError:
                kill(p)
                return None
            if p.poll() is not None:
                return None
            pubs[refused] = p
            return p

        wait_for(retry, 90, step=1, what="the refused key to take the freed slot")
        wait_segments(vid, refused, 2)
        for k in live[1:]:
            wait_advance(vid, k)
    finally:
        for p in pubs.values():
            kill(p)


# ------------------------------------------------------------------ held-request flood

def test_held_request_flood_with_vanishing_clients(life_factory):
    """Rounds of 3,000 blocking playlist reloads whose clients reset the connection while
    held: the registry lets go of every one (the held-requests gauge returns to zero),
    worker memory does not grow from round to round, and a real viewer beside the flood
    follows the stream throughout."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 8000:
        pytest.skip(f"open-file limit {hard} < 8000")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8000), hard))
    # 4 s segments: a request for two segments ahead waits several seconds, longer than
    # opening 3,000 connections takes.
    vid = life_factory(workers=2, segment="4s", events_extra="worker_connections 8192;",
                       main_extra="worker_rlimit_nofile 16384;")
    pub = publish(vid.rtmp_url("held"), seconds=90)
    side = publish(vid.rtmp_url("side"), seconds=90, size="320x240")
    try:
        wait_segments(vid, "held", 2, timeout=40)
        wait_segments(vid, "side", 2, timeout=40)
        # Real viewers of another stream, beside the flood.
        viewers = Viewers(vid, "side", 5, 50)
        linger = struct.pack("ii", 1, 0)  # close() sends RST
        rss = []
        for round_ in range(3):
            pl = playlist(vid, "held")
            msn = last_msn(pl) + 2  # held for about two segments
            socks = []
            for _ in range(3000):
                s = socket.create_connection(("127.0.0.1", vid.http_port), timeout=5)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                s.sendall(f"GET /live/held/index.m3u8?_HLS_msn={msn} HTTP/1.1\r\nHost: v\r\n\r\n".encode())
                socks.append(s)
            time.sleep(0.5)
            held = held_requests(vid, "held")
            _, before = listed(vid, "held")
            for s in socks:
                s.close()
            wait_for(lambda: held_requests(vid, "held") == 0, 10, step=0.2, what="the held requests to be let go")
            assert_served(vid, "held", before)
            rss.append(sum(rss_kb(p) for p in vid.worker_pids()))
            print(f"\nheld flood round {round_}: {held:.0f} held at once, workers' RSS {rss[-1]} KiB")
            assert held >= 2000, held
        stats = viewers.join(60)
        print(f"held flood: viewer beside it {stats['requests']} requests, statuses {dict(stats['status'])}")
        # Memory: rounds after the first (which sizes the pools) do not add up.
        assert rss[-1] - rss[1] < 8 * 1024, rss
        assert not stats["errors"], stats["errors"][:10]
        assert len({m for m, _ in stats["parts"]}) >= 8
        assert pub.poll() is None and side.poll() is None
        wait_advance(vid, "held")
        wait_advance(vid, "side")
    finally:
        kill(pub)
        kill(side)
