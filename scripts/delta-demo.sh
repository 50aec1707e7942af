#!/usr/bin/env bash
# The README's main-job command while the daemon is being built: fetch two releases of a real
# crate's source through cargo, then show what `chorus delta` sends to bring the old one to the
# new one, next to what rsync sends for the same update.
#
#   ./scripts/delta-demo.sh [CRATE OLD_VERSION NEW_VERSION]     (default: tokio 1.44.0 1.45.0)
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-tokio}
old=${2:-1.44.0}
new=${3:-1.45.0}
work=$(mktemp -d -t chorus-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p chorus
cargo_home=${CARGO_HOME:-$HOME/.cargo}
for v in "$old" "$new"; do
  proj="$work/fetch-$v"
  mkdir -p "$proj/src"
  : > "$proj/src/lib.rs"
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = { version = "=%s", default-features = false }\n[workspace]\n' \
    "$name" "$v" > "$proj/Cargo.toml"
  cargo fetch -q --manifest-path "$proj/Cargo.toml"
  crate=$(ls "$cargo_home"/registry/cache/*/"$name-$v.crate" | head -n 1)
  mkdir -p "$work/src"
  tar -xzf "$crate" -C "$work/src"
done
a="$work/src/$name-$old"
b="$work/src/$name-$new"
# What a real edit leaves: unchanged files keep their mtime, changed ones are newer.
find "$a" -type f -exec touch -d '2 days ago' {} +
(cd "$b" && find . -type f | while read -r f; do
  if cmp -s "$f" "$a/$f"; then touch -d '2 days ago' "$f"; else touch -d '1 day ago' "$f"; fi
done)

echo "== chorus delta: $name $old -> $new"
./target/release/chorus delta "$a" "$b"
if command -v rsync >/dev/null; then
  copy="$work/copy"
  cp -a "$a" "$copy"
  echo
  echo "== rsync -a --no-whole-file, same update"
  rsync -a --no-whole-file --stats "$b/" "$copy/" | grep -E 'Total bytes (sent|received)'
else
  echo "(install rsync to compare: apt-get install rsync)"
fi
