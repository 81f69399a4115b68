#!/usr/bin/env bash
# Installs the system packages a task needs, only those missing. Idempotent.
#   scripts/deps.sh build   compiler deps for nginx + the vid module, node + npm (player page)
#   scripts/deps.sh test    + ffmpeg, python test tools, a modern ffmpeg (imageio-ffmpeg),
#                           chromium (the player tests drive it with playwright-core),
#                           node + npm (m3u8-parser, playwright-core), Debian's nginx
#                           (the stock edge of tests/test_edge.py, the recordings test),
#                           sqlite3 and postgresql (recordings and catalog tests)
#   scripts/deps.sh bench   + nginx with nginx-rtmp-module (the peer we compare with), wrk
#   scripts/deps.sh image   + podman, debootstrap (scripts/test-image.sh)
set -euo pipefail
what=${1:-build}

pkgs=(libclang-dev libpcre2-dev libssl-dev zlib1g-dev pkg-config make gcc)
# node and npm: Debian's, unless the machine already has them (e.g. a newer install).
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
case "$what" in
  build) ;;
  # nginx: the stock server of the recordings test; sqlite3, postgresql: the catalog tests;
  # g++: libFuzzer (fuzz smoke run); faketime: clock-step tests; openssl: RTMPS certificates;
  # prometheus: promtool and a real Prometheus for the metrics tests; gdb: the zone-lock chaos test.
  test) pkgs+=(ffmpeg python3-pip curl procps chromium nginx sqlite3 postgresql faketime g++ openssl prometheus gdb) ;;
  image) pkgs+=(ffmpeg curl podman debootstrap) ;;
  bench) pkgs+=(ffmpeg python3-pip curl procps nginx libnginx-mod-rtmp wrk) ;;
  *) echo "usage: $0 build|test|bench|image" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "deps: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }

if [ "$what" = test ] || [ "$what" = bench ]; then
  py=(pytest==8.3.3 pytest-xdist==3.6.1 imageio-ffmpeg==0.8.1)
  for spec in "${py[@]}"; do
    name=${spec%%==*}
    python3 -m pip show -q "$name" >/dev/null 2>&1 || need_py=1
  done
  if [ "${need_py:-0}" = 1 ]; then
    echo "deps: pip installing ${py[*]}"
    python3 -m pip install -q --disable-pip-version-check "${py[@]}" 2>&1 | grep -v -i 'warning: running pip as' || true
  fi
fi
