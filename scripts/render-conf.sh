#!/usr/bin/env bash
# Renders nginx-conf/vid.conf for a local prefix:
#   scripts/render-conf.sh PREFIX [RTMP_PORT] [HTTP_PORT] [WORKERS] > PREFIX/conf/nginx.conf
# Rewrites the module path, the media path, the ports and worker_processes; the
# environment variables HLS_SEGMENT, HLS_PART, HLS_WINDOW and HLS_TS override those
# directives; WHIP_UDP (ADDRESS:PORT) sets hls_live_whip_udp.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$1; rtmp=${2:-1935}; http=${3:-8080}; workers=${4:-auto}
sed -e "s#load_module modules/libvid.so;#load_module $root/build/modules/libvid.so;#" \
    -e "s#/var/lib/vid#$prefix/media#" \
    -e "s#/usr/share/vid/www#$root/build/www#" \
    -e "s#listen 127.0.0.1:1935;#listen 127.0.0.1:$rtmp;#" \
    -e "s#listen 127.0.0.1:8080;#listen 127.0.0.1:$http;#" \
    -e "s#worker_processes auto;#worker_processes $workers;#" \
    -e "s#hls_live_segment 2s;#hls_live_segment ${HLS_SEGMENT:-2s};#" \
    -e "s#hls_live_part 200ms;#hls_live_part ${HLS_PART:-200ms};#" \
    -e "s#hls_live_window 12;#hls_live_window ${HLS_WINDOW:-12};#" \
    -e "s#hls_live_ts off; #hls_live_ts ${HLS_TS:-off}; #" \
    -e "s#hls_live_whip_udp 127.0.0.1:8189;#hls_live_whip_udp ${WHIP_UDP:-127.0.0.1:8189};#" \
    "$root/nginx-conf/vid.conf"
