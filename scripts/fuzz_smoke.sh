#!/usr/bin/env bash
# A short coverage-guided run of every fuzz target (fuzz/, libFuzzer) from the committed
# corpora: a few seconds each. New inputs go to target/fuzz-smoke/, never into fuzz/corpus.
# Long runs: see fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
SECONDS_EACH=${FUZZ_SECONDS:-2}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
# cargo-fuzz passes -Z flags; a stable toolchain accepts them with RUSTC_BOOTSTRAP=1.
RUSTC_BOOTSTRAP=1 cargo fuzz build -O --sanitizer none
host=$(rustc -vV | sed -n 's/^host: //p')
for t in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
  scratch=../target/fuzz-smoke/$t
  rm -rf "$scratch" && mkdir -p "$scratch"
  out=$(target/"$host"/release/"$t" -max_total_time="$SECONDS_EACH" -max_len=65536 \
        -artifact_prefix="$scratch/" "$scratch" "corpus/$t" 2>&1) || {
    echo "$out" | tail -40
    echo "fuzz target $t failed (artifact in fuzz/$scratch)"
    exit 1
  }
  echo "fuzz $t: $(echo "$out" | grep -E '^Done [0-9]+ runs' || echo "$out" | tail -1)"
done
