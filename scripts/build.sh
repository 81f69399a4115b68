#!/usr/bin/env bash
# Builds nginx 1.28 (vendored, --with-compat --with-stream) and the vid module, and lays
# them out under build/: build/sbin/nginx, build/modules/libvid.so, and the player page
# under build/www/ (hls.js from npm in build/www/vendor/ when npm is available).
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
# Copy, then rename into place: a running nginx keeps its mapping of the old files, and
# a reload picks up a complete new module (writing over a loaded .so crashes workers).
cp -f "$nginx" build/sbin/nginx.new && mv -f build/sbin/nginx.new build/sbin/nginx
cp -f "$dir/libvid.so" build/modules/libvid.so.new && mv -f build/modules/libvid.so.new build/modules/libvid.so
echo "build: $(build/sbin/nginx -v 2>&1) + build/modules/libvid.so"

# The player page: static files, plus hls.js pinned by nginx-conf/www/package-lock.json.
www=nginx-conf/www
rm -rf build/www
mkdir -p build/www/vendor
cp -f "$www"/*.html "$www"/*.js "$www"/*.css build/www/
if command -v npm >/dev/null 2>&1; then
  hls=$www/node_modules/hls.js
  # npm ci only when the installed tree is missing or older than the lock file.
  if [ ! -f "$hls/dist/hls.min.js" ] || [ "$www/package-lock.json" -nt "$www/node_modules/.package-lock.json" ]; then
    npm ci --prefix "$www" --no-audit --no-fund --loglevel=error >/dev/null
  fi
  cp -f "$hls/dist/hls.min.js" build/www/vendor/hls.min.js
  echo "build: build/www (hls.js $(node -p "require('./$hls/package.json').version" 2>/dev/null || echo '?'))"
else
  echo "build: build/www without hls.js (npm not found; the page falls back to native HLS)" >&2
fi
