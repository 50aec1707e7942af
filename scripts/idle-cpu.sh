#!/usr/bin/env bash
# CPU an idle group costs: three daemons formed the README's way (init, invite, join twice,
# run) on this machine, left alone once they agree, their CPU time (utime + stime from
# /proc/PID/stat) read before and after SECS seconds. Prints one line per node and the mean,
# as a percentage of one core. Not part of the test command.
#
#   ./scripts/idle-cpu.sh [CHORUS_BINARY] [SECS]     (default target/release/chorus, 30 s)
set -euo pipefail
bin=$(realpath "${1:-target/release/chorus}")
secs=${2:-30}
source "$(dirname "$0")/group.sh"

form_group
echo "hello" >"$dir/a/hello.txt"
# Agreed: every node has the file and says it is settled, twice in a row a second apart.
agreed=0
for _ in $(seq 1 120); do
  ok=1
  for n in a b c; do
    [ -f "$dir/$n/hello.txt" ] || ok=0
    "$bin" status --json --folder "$dir/$n" 2>/dev/null | grep -q '"settled": *true' || ok=0
  done
  if [ "$ok" = 1 ]; then agreed=$((agreed + 1)); else agreed=0; fi
  [ "$agreed" -ge 2 ] && break
  sleep 1
done
[ "$agreed" -ge 2 ] || { echo "the group did not agree" >&2; exit 1; }
sleep 5

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A before
for p in "${pid[@]}"; do before[$p]=$(ticks "$p"); done
sleep "$secs"
total=0
i=0
for p in "${pid[@]}"; do
  used=$(( $(ticks "$p") - before[$p] ))
  pct=$(awk -v u="$used" -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.2f", 100 * u / hz / s }')
  echo "node $i: ${pct}% of a core"
  total=$(awk -v t="$total" -v p="$pct" 'BEGIN { print t + p }')
  i=$((i + 1))
done
awk -v t="$total" 'BEGIN { printf "mean: %.2f%% of a core per node\n", t / 3 }'
