#!/usr/bin/env bash
# Runs every test: media-core unit tests (cargo), then integration tests against a real
# nginx + vid with real ffmpeg publishers and players (pytest). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

echo "== unit tests (cargo test)"
# The media core has no nginx in it: its tests need no nginx build.
cargo test --release --no-default-features

echo "== fuzz smoke run (every target a few seconds; corpora also replayed by cargo test)"
scripts/fuzz_smoke.sh

echo "== build nginx + module"
VID_PROFILE=release scripts/build.sh

echo "== integration tests (pytest)"
python3 -m pytest -q -p no:cacheprovider tests "$@"
