#!/usr/bin/env bash
# Prints a signed publish key, the text a streamer pastes into OBS's "Stream Key" field
# (or appends to rtmp://HOST/live/):
#   scripts/sign-key.sh KEY TTL [SECRET]
# KEY: the stream key ([A-Za-z0-9_-]{1,64}); TTL: seconds the key may start a publish
# (a publish that started keeps running); SECRET: one of the stream server's
# rtmp_live_secret values (default: $VID_PUBLISH_SECRET).
# Output: KEY?exp=EXP&sig=SIG, SIG = base64url(HMAC-SHA256(SECRET, "KEY:EXP")[0..16]).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 KEY TTL [SECRET]" >&2; exit 2; }
key=$1; ttl=$2; secret=${3:-${VID_PUBLISH_SECRET:-}}
[[ $key =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { echo "sign-key: invalid KEY (allowed: [A-Za-z0-9_-]{1,64})" >&2; exit 2; }
[[ $ttl =~ ^[0-9]+$ ]] || { echo "sign-key: TTL must be a number of seconds" >&2; exit 2; }
[ -n "$secret" ] || { echo "sign-key: no SECRET (argument or VID_PUBLISH_SECRET)" >&2; exit 2; }
exp=$(( $(date +%s) + ttl ))
sig=$(printf '%s:%s' "$key" "$exp" | openssl dgst -sha256 -hmac "$secret" -binary | head -c 16 |
      openssl base64 -A | tr '+/' '-_' | tr -d '=')
printf '%s?exp=%s&sig=%s\n' "$key" "$exp" "$sig"
