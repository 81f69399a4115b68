#!/usr/bin/env bash
# A self-signed certificate for an edge's TLS listener (tests, local runs, compose):
#   scripts/cdn_cert.sh DIR [NAME]   → DIR/edge.crt, DIR/edge.key (CN and SAN = NAME,
#                                      default localhost, plus 127.0.0.1)
# Production edges use a real certificate instead.
set -euo pipefail
dir=$1; name=${2:-localhost}
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$name" \
    -addext "subjectAltName=DNS:$name,IP:127.0.0.1" \
    -keyout "$dir/edge.key" -out "$dir/edge.crt" 2>/dev/null
chmod 644 "$dir/edge.crt"; chmod 600 "$dir/edge.key"
echo "$dir/edge.crt"
