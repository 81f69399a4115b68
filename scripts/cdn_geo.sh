#!/usr/bin/env bash
# Geography: a viewer near an edge (5 ms) with the origin far away (80 ms), compared with
# the same viewer fetching straight from the origin (85 ms): time to first frame (ffmpeg,
# cold and warm edge cache) and live latency (LL-HLS blocking reloads).
#   scripts/cdn_geo.sh            VIEWER_EDGE_MS=5 EDGE_ORIGIN_MS=80 GEO_RUNS=3 override
# Delays come from tc netem between network namespaces where the kernel has it; where it
# does not (no sch_netem here) from a user-space TCP relay (scripts/cdn_geo.py says how).
# Skips with a message when it cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/sbin/nginx ] || { echo "cdn_geo: build first (scripts/build.sh)"; exit 0; }
command -v ffmpeg >/dev/null || { echo "cdn_geo: skipped, ffmpeg missing"; exit 0; }
netem=no
if ip netns add vid-geo-probe 2>/dev/null; then
  ip -n vid-geo-probe link set lo up 2>/dev/null || true
  ip netns exec vid-geo-probe tc qdisc add dev lo root netem delay 1ms 2>/dev/null && netem=yes
  ip netns del vid-geo-probe
fi
if [ "$netem" = yes ]; then
  echo "cdn_geo: tc netem is available; this script still uses the relay (same figures model)"
else
  echo "cdn_geo: tc netem not available (namespaces $(ip netns list >/dev/null 2>&1 && echo permitted || echo not permitted)); using the user-space delay relay"
fi
exec python3 scripts/cdn_geo.py
