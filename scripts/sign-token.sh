#!/usr/bin/env bash
# Prints a playback token for one stream, as the path prefix a viewer's URL starts with:
#   scripts/sign-token.sh KEY TTL [SECRET [ADDR]]
# then give the viewer  https://HOST/t/EXP-SIG/live/KEY/index.m3u8  (or master.m3u8).
# SECRET: the origin's hls_live_token_secret / the edges' token secret (default:
# $VID_TOKEN_SECRET); ADDR: the viewer's address, for hls_live_token_bind_addr on.
# Output: /t/EXP-SIG, SIG = base64url(md5("EXP" "KEY" "ADDR" " " "SECRET")), the form
# nginx's secure_link_md5 checks.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 KEY TTL [SECRET [ADDR]]" >&2; exit 2; }
key=$1; ttl=$2; secret=${3:-${VID_TOKEN_SECRET:-}}; addr=${4:-}
[[ $key =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { echo "sign-token: invalid KEY (allowed: [A-Za-z0-9_-]{1,64})" >&2; exit 2; }
[[ $ttl =~ ^[0-9]+$ ]] || { echo "sign-token: TTL must be a number of seconds" >&2; exit 2; }
[ -n "$secret" ] || { echo "sign-token: no SECRET (argument or VID_TOKEN_SECRET)" >&2; exit 2; }
exp=$(( $(date +%s) + ttl ))
sig=$(printf '%s%s%s %s' "$exp" "$key" "$addr" "$secret" | openssl md5 -binary |
      openssl base64 -A | tr '+/' '-_' | tr -d '=')
printf '/t/%s-%s\n' "$exp" "$sig"
