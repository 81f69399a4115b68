#!/usr/bin/env bash
# Runs every test: media-core unit tests (cargo), then integration tests against a real
# nginx + vid with real ffmpeg publishers and players (pytest). Installs what it needs.
#   VID_TEST_IMAGE=1 scripts/test.sh   also builds and runs the Docker image (scripts/test-image.sh,
#                                      as root with podman + debootstrap; several minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
steps=5
step() { echo "== [$1/$steps, $(( $(date +%s) - t0 ))s] $2"; }
step 1 "dependencies (scripts/deps.sh test)"
scripts/deps.sh test
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

step 2 "unit tests (cargo test)"
# The media core has no nginx in it: its tests need no nginx build.
cargo test --release --no-default-features

step 3 "fuzz smoke run (every target a few seconds; corpora also replayed by cargo test)"
scripts/fuzz_smoke.sh

step 4 "build nginx + module"
VID_PROFILE=release scripts/build.sh

step 5 "integration tests (pytest; [done/total] at the end of each line)"
python3 -m pytest -q -p no:cacheprovider -o console_output_style=count tests "$@"
if [ "${VID_TEST_IMAGE:-0}" = 1 ]; then
  echo "== [extra, $(( $(date +%s) - t0 ))s] Docker image (VID_TEST_IMAGE=1): scripts/test-image.sh"
  scripts/test-image.sh
else
  echo "== Docker image test skipped (separately: scripts/test-image.sh, or VID_TEST_IMAGE=1 scripts/test.sh)"
fi
echo "== all tests passed ($(( $(date +%s) - t0 ))s)"
