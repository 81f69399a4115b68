#!/bin/sh
# fuzz/run.sh TARGET RUNS [extra libFuzzer flags]: fuzzes TARGET for RUNS executions from
# the committed seeds (new inputs go to fuzz/corpus-run/TARGET, not committed).
set -e
cd "$(dirname "$0")"
t=$1; runs=$2; shift 2
mkdir -p corpus-run/$t artifacts/$t
cp -n corpus/$t/* corpus-run/$t/ 2>/dev/null || true
exec nice -n 19 target/x86_64-unknown-linux-gnu/release/$t -runs=$runs -max_len=65536 \
    -artifact_prefix=artifacts/$t/ -print_final_stats=1 "$@" corpus-run/$t
