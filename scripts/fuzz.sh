#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and prints a table of executions and
# findings (a finding is a file libFuzzer left in fuzz/artifacts/TARGET/). Not part of the
# test command. Every finding must become a regression unit test in the crate it concerns.
#
#   ./scripts/fuzz.sh [SECONDS_PER_TARGET]       (default 60)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The toolchain here is stable, so targets are
# built without a sanitizer (-s none): the code under test is safe Rust, and what the targets
# check is the absence of panics and their stated properties.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
cargo fuzz build -O -s none
targets=$(cargo fuzz list)
printf '| target | seconds | executions | corpus entries | findings |\n|---|---:|---:|---:|---:|\n'
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  cargo fuzz run -O -s none "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
    -max_len=65536 -rss_limit_mb=2048 >"$log" 2>&1 || true
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  findings=$(find "artifacts/$t" -type f | wc -l)
  printf '| %s | %s | %s | %s | %s |\n' "$t" "$secs" "${execs:-?}" "$corpus" "$findings"
  if [ "$findings" -gt 0 ]; then
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -n 5 >&2
  fi
  rm -f "$log"
done
