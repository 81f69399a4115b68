#!/usr/bin/env bash
# Renders an edge (nginx-conf/edge.conf + edge-origins.conf + edge-age.conf) for a local
# prefix, the way scripts/render-conf.sh does for an origin:
#   scripts/render-edge.sh PREFIX HTTP_PORT HTTPS_PORT ORIGIN... 
# writes PREFIX/conf/{nginx.conf,edge-origins.conf,edge-age.conf} and creates the cache,
# log and certificate paths (a self-signed certificate, scripts/cdn_cert.sh, when
# PREFIX/conf/edge.crt is missing). ORIGIN is HOST:PORT of a vid origin's HTTP listener.
# Environment: EDGE_TD (origin target duration in seconds, default 2), EDGE_NAME
# (sent to origins as X-Vid-Edge, default edge), EDGE_WORKERS (default auto),
# EDGE_TOKEN_SECRET (playback tokens required when set; default off), EDGE_NGINX
# (the nginx binary that will run it, default build/sbin/nginx: before nginx 1.25.1 HTTP/2
# is switched on with `listen … ssl http2;` instead of `http2 on;`), EDGE_CONF (default
# nginx-conf/edge.conf; nginx-conf/edge-vid.conf for the vid edge, which needs the module).
# Run it: build/sbin/nginx -p PREFIX -c conf/nginx.conf
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 4 ] || { echo "usage: $0 PREFIX HTTP_PORT HTTPS_PORT ORIGIN..." >&2; exit 2; }
prefix=$(mkdir -p "$1" && cd "$1" && pwd); http=$2; https=$3; shift 3
td=${EDGE_TD:-2}; name=${EDGE_NAME:-edge}; workers=${EDGE_WORKERS:-auto}
token=${EDGE_TOKEN_SECRET:-}
[[ $token =~ ^[A-Za-z0-9_.-]*$ ]] || { echo "render-edge: EDGE_TOKEN_SECRET: use [A-Za-z0-9_.-]" >&2; exit 2; }
conf=${EDGE_CONF:-$root/nginx-conf/edge.conf}
bin=${EDGE_NGINX:-$root/build/sbin/nginx}
[ -x "$bin" ] || bin=$(command -v nginx || echo "$bin")
# nginx >= 1.25.1 has `http2 on;`; older ones only `listen … http2`.
ver=$("$bin" -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')
if [ -n "$ver" ] && [ "$(printf '%s\n' "$ver" 1.25.1 | sort -V | head -1)" != 1.25.1 ]; then
  h2=(-e "s#listen 443 ssl;#listen 443 ssl http2;#" -e "/^ *http2 on;/d")
else
  h2=(-e "s#^\( *\)http2 on;#\1http2 on;#")
fi
mkdir -p "$prefix"/{conf,logs,cache}
[ -f "$prefix/conf/edge.crt" ] || "$root/scripts/cdn_cert.sh" "$prefix/conf" >/dev/null

# Times tagged "# N TD", "# TD / 2" or "# N TD + Ks" are rewritten for EDGE_TD
# (whole seconds, at least 1s).
sed "${h2[@]}" \
    -e "s#listen 80;#listen 127.0.0.1:$http;#" \
    -e "s#listen 443 ssl#listen 127.0.0.1:$https ssl#" \
    -e "s#/etc/nginx/certs/#$prefix/conf/#" \
    -e "s#^load_module modules/#load_module $root/build/modules/#" \
    -e "s#/var/log/nginx/#$prefix/logs/#" \
    -e "s#/var/cache/nginx/vid#$prefix/cache#" \
    -e "s#unix:/var/run/vid-edge-fetch.sock#unix:$prefix/fetch.sock#" \
    -e "s#/var/run/vid-edge.pid#$prefix/logs/nginx.pid#" \
    -e "s#worker_processes auto;#worker_processes $workers;#" \
    -e "s#proxy_set_header X-Vid-Edge edge;#proxy_set_header X-Vid-Edge $name;#" \
    -e "s#proxy_next_upstream_tries 2;#proxy_next_upstream_tries $#;#" \
    -e "s#default \"\"; *\# token secret#default \"$token\";#" \
    "$conf" |
awk -v td="$td" '
  match($0, /# *([0-9]+ TD|TD \/ 2)( \+ [0-9]+s)?/) {
    tag = substr($0, RSTART, RLENGTH); head = substr($0, 1, RSTART - 1); tail = substr($0, RSTART)
    t = tag; sub(/^# */, "", t)
    mult = (tag ~ /TD \/ 2/) ? 0.5 : t + 0
    add = 0
    if (match(tag, /\+ [0-9]+s/)) add = substr(tag, RSTART + 2, RLENGTH - 3) + 0
    secs = mult * td + add
    if (secs != int(secs)) secs = int(secs) + 1
    if (secs < 1) secs = 1
    # the value is the "<n>s;" right before the comment
    if (match(head, /[0-9]+s; *$/)) {
      pad = substr(head, RSTART, RLENGTH); sub(/^[0-9]+s;/, "", pad)
      head = substr(head, 1, RSTART - 1) secs "s;" pad
    }
    print head tail; next
  }
  { print }' > "$prefix/conf/nginx.conf"

{
  sed -n '1,/^upstream/{/^upstream/!p}' "$root/nginx-conf/edge-origins.conf"
  echo "upstream vid_origins {"
  echo "    hash \$vid_stream consistent;"
  for o in "$@"; do echo "    server $o max_fails=1 fail_timeout=5s;"; done
  echo "    keepalive 32;"
  echo "    keepalive_timeout 60s;"
  echo "    keepalive_requests 10000;"
  echo "}"
} > "$prefix/conf/edge-origins.conf"
cp "$root/nginx-conf/edge-age.conf" "$prefix/conf/edge-age.conf"
