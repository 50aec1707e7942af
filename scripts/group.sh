# Sourced by the whole-process measurement scripts (idle-cpu.sh, failover.sh): a group of
# three daemons, a, b and c, formed the README's way (init, run, invite, join twice, run) in a
# temporary folder with the chorus binary $bin; the daemons are stopped and the folder removed
# when the script exits. Not part of the test command.
#
#   bin=...; source scripts/group.sh; form_group     (then $dir/a, $dir/b, $dir/c, ${pid[a]}...)

dir=$(mktemp -d)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
export RUST_LOG=warn CHORUS_LOG=warn

start() { # start NAME: runs the daemon of share NAME and waits for its socket
  "$bin" run "$dir/$1" >>"$dir/$1.log" 2>&1 &
  pid[$1]=$!
  for _ in $(seq 1 100); do
    "$bin" status --folder "$dir/$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the daemon of $1 did not start" >&2
  exit 1
}

form_group() { # a initialised and running, b and c joined with its invites and running
  "$bin" init "$dir/a" >/dev/null 2>&1
  start a
  for n in b c; do
    # (the token alone: older builds printed advice on stdout too)
    token=$("$bin" invite --folder "$dir/a" 2>/dev/null | grep -o 'chorus1[A-Za-z0-9]*' | head -n 1)
    "$bin" join "$token" "$dir/$n" >/dev/null 2>&1
    start "$n"
  done
}
