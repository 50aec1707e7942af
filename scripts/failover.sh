#!/usr/bin/env bash
# How long a group is without a leader when the leader goes: three daemons formed the
# README's way (init, invite, join twice, run) on this machine; ROUNDS times, the leader is
# killed with SIGKILL (MODE kill: its connections close, as when a daemon dies) or frozen with
# SIGSTOP (MODE freeze: nothing closes, as when a machine vanishes), and the others'
# `chorus status --json` polled until one says it leads. Prints each round's time from the
# signal to the new leader, then the median and the largest. Not part of the test command.
#
#   ./scripts/failover.sh [CHORUS_BINARY] [ROUNDS] [MODE]   (default target/release/chorus, 5, kill)
set -euo pipefail
bin=$(realpath "${1:-target/release/chorus}")
rounds=${2:-5}
mode=${3:-kill}
source "$(dirname "$0")/group.sh"

role() { "$bin" status --json --folder "$dir/$1" 2>/dev/null | grep -o '"role": *"[a-z]*"' | grep -o '[a-z]*"$' | tr -d '"'; }

form_group

times=()
for r in $(seq 1 "$rounds"); do
  # Three voters, one leader, everything settled.
  for _ in $(seq 1 300); do
    leaders=0; followers=0
    for n in a b c; do
      case "$(role $n)" in leader) leaders=$((leaders + 1)); lead=$n ;; follower) followers=$((followers + 1)) ;; esac
    done
    [ "$leaders" = 1 ] && [ "$followers" = 2 ] && break
    sleep 0.2
  done
  [ "$leaders" = 1 ] && [ "$followers" = 2 ] || { echo "round $r: no settled group" >&2; exit 1; }
  sleep 3
  t0=$(date +%s%N)
  if [ "$mode" = freeze ]; then kill -STOP "${pid[$lead]}"; else kill -9 "${pid[$lead]}"; fi
  new=""
  while [ -z "$new" ]; do
    for n in a b c; do
      [ "$n" = "$lead" ] && continue
      [ "$(role $n)" = leader ] && new=$n
    done
    [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 60000 ] && { echo "round $r: no new leader in 60 s" >&2; exit 1; }
  done
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "round $r: leader $lead ${mode}, $new leads after $ms ms"
  times+=("$ms")
  if [ "$mode" = freeze ]; then
    kill -CONT "${pid[$lead]}"
  else
    wait "${pid[$lead]}" 2>/dev/null || true
    start "$lead"
  fi
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
echo "median ${median} ms, largest $(echo "$sorted" | tail -n 1) ms over $rounds rounds"
