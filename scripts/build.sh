#!/usr/bin/env bash
# Builds nginx 1.28 (vendored, --with-compat --with-stream) and the vid module, and lays
# them out under build/: build/sbin/nginx, build/modules/libvid.so.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
profile=${VID_PROFILE:-release}
cargo build --profile "$profile" --lib
dir=target/$profile
nginx=$(ls -t "$dir"/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -1)
[ -x "$nginx" ] || { echo "build: nginx binary not found under $dir/build" >&2; exit 1; }
mkdir -p build/sbin build/modules
cp -f "$nginx" build/sbin/nginx
cp -f "$dir/libvid.so" build/modules/libvid.so
echo "build: $(build/sbin/nginx -v 2>&1) + build/modules/libvid.so"
