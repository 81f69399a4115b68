#!/usr/bin/env bash
# Builds nginx + vid and runs an origin on 127.0.0.1 in the foreground (Ctrl-C stops it).
#   RTMP_PORT (1935), HTTP_PORT (8080), WORKERS (auto), VID_PREFIX (./run) override defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
rtmp=${RTMP_PORT:-1935}; http=${HTTP_PORT:-8080}; workers=${WORKERS:-auto}
prefix=$(mkdir -p "${VID_PREFIX:-run}" && cd "${VID_PREFIX:-run}" && pwd)
echo "== [1/3] build nginx + vid (scripts/build.sh)"
scripts/build.sh
echo "== [2/3] config: $prefix/conf/nginx.conf"
mkdir -p "$prefix"/{conf,logs,media}
chmod 1777 "$prefix/media"   
scripts/render-conf.sh "$prefix" "$rtmp" "$http" "$workers" > "$prefix/conf/nginx.conf"
build/sbin/nginx -p "$prefix" -c conf/nginx.conf -e logs/error.log -t -q
cat <<MSG

vid origin on 127.0.0.1 (config: $prefix/conf/nginx.conf, log: $prefix/logs/error.log)
  publish:  ffmpeg -re -i input.mp4 -c copy -f flv rtmp://127.0.0.1:$rtmp/live/demo
    WHIP:   ffmpeg -re -i input.mp4 -c:v libx264 -bf 0 -c:a libopus -f whip http://127.0.0.1:$http/whip/demo
            (ffmpeg 8+; or "Go live from this browser" on the player page; UDP 8189+ per worker)
  watch:    ffplay http://127.0.0.1:$http/live/demo/index.m3u8
            (or VLC / ffmpeg -i with the same URL; any key [A-Za-z0-9_-]{1,64} works)
  player:   http://127.0.0.1:$http/  (live streams, hls.js low-latency playback, latency)
Ctrl-C stops it.

MSG
echo "== [3/3] nginx running (metrics: http://127.0.0.1:$http/metrics)"
exec build/sbin/nginx -p "$prefix" -c conf/nginx.conf -e logs/error.log -g 'daemon off;'
