#!/usr/bin/env bash
# Builds the repo's Dockerfile with podman from locally made base images and runs the
# image's nginx (chroot into the image's root file system: `podman run` cannot set up
# cgroups in some sandboxes): `nginx -t`, an RTMP publish and an HLS playback through it.
#   scripts/test-image.sh            (as root; needs podman, debootstrap, ffmpeg, curl)
# Bases: a Debian bookworm minbase made with debootstrap (runtime stage), and the same
# plus the host's Rust toolchain, mounted read-only during the build (builder stage).
# MIRROR overrides the Debian mirror (default: the first one apt is configured with).
# VID_IMAGE_REUSE=1 runs the image built last time (localhost/vid:test) instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=${VID_IMAGE_WORK:-/var/tmp/vid-image}
steps=6; step=0; t0=$(date +%s)
say() { step=$((step + 1)); echo "== test-image [$step/$steps, $(( $(date +%s) - t0 ))s] $*"; }
[ "$(id -u)" = 0 ] || { echo "test-image: needs root (debootstrap, chroot)" >&2; exit 1; }
scripts/deps.sh image
for t in podman debootstrap ffmpeg curl; do
  command -v $t >/dev/null || { echo "test-image: $t not found" >&2; exit 1; }
done
mirror=${MIRROR:-$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?$' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1 | awk '{print $2}' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$work"

say "runtime base: debootstrap --variant=minbase bookworm ($mirror)"
if ! podman image exists localhost/vid-base:bookworm; then
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
  tar -C "$work/rootfs" -c . | podman import - localhost/vid-base:bookworm >/dev/null
  rm -rf "$work/rootfs"
else
  echo "   (cached: localhost/vid-base:bookworm)"
fi

say "builder base: the runtime base + the host's Rust toolchain on PATH + the host's CA bundle"
toolchain=$(rustc --print sysroot)
mkdir -p "$work/builder"
# The host's trusted certificates, so that the crate and npm registries are reachable
# the same way from the build as from the host (e.g. behind a TLS-inspecting proxy).
cp -f "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$work/builder/host-ca.crt"
cat > "$work/builder/Containerfile" <<'CF'
FROM localhost/vid-base:bookworm
COPY host-ca.crt /usr/local/share/host-ca.crt
ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/usr/local/share/host-ca.crt \
    CARGO_HTTP_CAINFO=/usr/local/share/host-ca.crt \
    NODE_EXTRA_CA_CERTS=/usr/local/share/host-ca.crt
CF
podman build -q --isolation=chroot -t localhost/vid-builder:bookworm "$work/builder" >/dev/null

say "podman build (the repo's Dockerfile, bases overridden by build args)"
if [ "${VID_IMAGE_REUSE:-0}" = 1 ] && podman image exists localhost/vid:test; then
  echo "   (VID_IMAGE_REUSE=1: running the image built last time)"
else
podman build --isolation=chroot \
  --build-arg BUILDER_IMAGE=localhost/vid-builder:bookworm \
  --build-arg RUNTIME_IMAGE=localhost/vid-base:bookworm \
  -v "$toolchain:/opt/rust:ro" \
  -t localhost/vid:test . 2>&1 | grep --line-buffered -E '^(\[[0-9]/[0-9]\] STEP|build:|deps:|Successfully)' || true
fi
podman image exists localhost/vid:test || { echo "test-image: build failed" >&2; exit 1; }

say "nginx -t inside the image's root file system"
ctr=$(podman create localhost/vid:test)
mnt=$(podman mount "$ctr")
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  sleep 1
  umount "$mnt/proc" 2>/dev/null || true
  umount "$mnt/dev" 2>/dev/null || true
  podman umount "$ctr" >/dev/null 2>&1 || true
  podman rm -f "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# What a container runtime would provide: /dev (/dev/stdout, /dev/stderr) and /proc.
mount --bind /dev "$mnt/dev"
mount -t proc proc "$mnt/proc"
rtmp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i -e "s#listen 1935;#listen 127.0.0.1:$rtmp;#" -e "s#listen 8080;#listen 127.0.0.1:$http;#" "$mnt/etc/vid/nginx.conf"
# A container runtime hands the process stdout/stderr it may open (runc chowns the stdio
# pipes to the container user); so does this: a log file owned by the image's user vid.
vid_uid=$(awk -F: '$1 == "vid" {print $3 ":" $4}' "$mnt/etc/passwd")
: > "$work/nginx.out"
chown "$vid_uid" "$work/nginx.out"
chroot --userspec=vid:vid "$mnt" /usr/local/sbin/nginx -p /etc/vid -c nginx.conf -e /dev/stderr -t \
  >> "$work/nginx.out" 2>&1 || { cat "$work/nginx.out"; exit 1; }
sed 's/^/   /' "$work/nginx.out"

say "start nginx as user vid; publish over RTMP"
chroot --userspec=vid:vid "$mnt" /usr/local/sbin/nginx -p /etc/vid -c nginx.conf -e /dev/stderr -g 'daemon off;' \
  >> "$work/nginx.out" 2>&1 &
pid=$!
for i in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$http/streams.json" 2>/dev/null && break; sleep 0.2; done
ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine \
  -t 12 -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac \
  -f flv "rtmp://127.0.0.1:$rtmp/live/image" &
pub=$!
for i in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$http/live/image/index.m3u8" 2>/dev/null && break; sleep 0.2; done

say "playback: ffmpeg reads the HLS stream served by the image"
ffmpeg -hide_banner -loglevel error -i "http://127.0.0.1:$http/live/image/index.m3u8" -t 3 -f null - 
frames=$(ffprobe -v error -select_streams v -count_frames -show_entries stream=nb_read_frames -of csv=p=0 \
  "http://127.0.0.1:$http/live/image/index.m3u8" 2>/dev/null | head -1 || true)
wait $pub || true
echo "   playlist served, ffmpeg decoded it (${frames:-?} video frames listed); HEALTHCHECK command:"
chroot --userspec=vid:vid "$mnt" curl -fsS -o /dev/null -w '   %{http_code} /streams.json\n' "http://127.0.0.1:$http/streams.json"
grep -q 'rtmp: publish "live/image" started' "$work/nginx.out" || { cat "$work/nginx.out"; exit 1; }
echo "== test-image: ok ($(( $(date +%s) - t0 ))s)"
