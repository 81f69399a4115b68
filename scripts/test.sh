#!/usr/bin/env bash
# Runs every test: media-core unit tests (cargo), then integration tests against a real
# nginx + vid with real ffmpeg publishers and players (pytest). Installs what it needs.
# Fuzzing proper is separate (fuzz/run.sh, scripts/fuzz_smoke.sh); cargo test replays
# the committed corpora.
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

step 2 "unit tests (cargo test; also replays the fuzz corpora, see fuzz/README.md)"
# The media core has no nginx in it: its tests need no nginx build.
cargo test --release --no-default-features

step 3 "build nginx + module"
VID_PROFILE=release scripts/build.sh

# Functional tests (what is served, not how fast) run two at a time, one file per
# process; tests that measure time or load, or drive browsers, run alone afterwards.
parallel=(tests/test_origin.py tests/test_recording.py tests/test_conformance.py tests/test_timeline.py
          tests/test_ts.py tests/test_renditions.py tests/test_bad_input.py tests/test_metrics.py
          tests/test_whip.py tests/test_catalog.py)
serial=()
for f in tests/test_*.py; do
  [[ " ${parallel[*]} " == *" $f "* ]] || serial+=("$f")
done
# Both phases run whatever the first gave; exit status 5 is "no test selected" (-k …).
pytest_phase() {
  local rc=0
  python3 -m pytest -q -p no:cacheprovider -o console_output_style=count "$@" || rc=$?
  [ "$rc" = 5 ] && rc=0
  return "$rc"
}
step 4 "integration tests, functional, 2 at a time (pytest -n 2; [done/total] per line)"
rc=0
pytest_phase -n 2 --dist loadfile "${parallel[@]}" "$@" || rc=$?
step 5 "integration tests, timing and load, one at a time (pytest; [done/total] per line)"
pytest_phase "${serial[@]}" "$@" || rc=$?
[ "$rc" = 0 ] || { echo "== integration tests failed ($(( $(date +%s) - t0 ))s)"; exit "$rc"; }
if [ "${VID_TEST_IMAGE:-0}" = 1 ]; then
  echo "== [extra, $(( $(date +%s) - t0 ))s] Docker image (VID_TEST_IMAGE=1): scripts/test-image.sh"
  scripts/test-image.sh
else
  echo "== Docker image test skipped (separately: scripts/test-image.sh, or VID_TEST_IMAGE=1 scripts/test.sh)"
fi
echo "== all tests passed ($(( $(date +%s) - t0 ))s)"
