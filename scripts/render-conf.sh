#!/usr/bin/env bash
# Renders nginx-conf/vid.conf for a local prefix:
#   scripts/render-conf.sh PREFIX [RTMP_PORT] [HTTP_PORT] [WORKERS] > PREFIX/conf/nginx.conf
# Rewrites the module path, the media path, the ports and worker_processes; nothing else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$1; rtmp=${2:-1935}; http=${3:-8080}; workers=${4:-auto}
sed -e "s#load_module modules/libvid.so;#load_module $root/build/modules/libvid.so;#" \
    -e "s#/var/lib/vid#$prefix/media#" \
    -e "s#listen 127.0.0.1:1935;#listen 127.0.0.1:$rtmp;#" \
    -e "s#listen 127.0.0.1:8080;#listen 127.0.0.1:$http;#" \
    -e "s#worker_processes auto;#worker_processes $workers;#" \
    "$root/nginx-conf/vid.conf"
