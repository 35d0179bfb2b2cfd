#!/usr/bin/env bash
# PST import against readpst: each PST of ../shared/corpora/pst, ROUNDS times (default 20), through
# `coffer import` (into a new data folder each time: stored durably, catalogued and searchable) and
# through `readpst -e` (each item written out as a file), one after the other in the same run;
# items a second and the peak RSS of each. Needs COFFER_CORPUS_DIR and readpst (pst-utils).
# Usage: bench/pst.sh [ROUNDS]. Writes bench/out/pst.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
OUT=bench/out
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
cargo build --release -q -p coffer
COFFER=$PWD/target/release/coffer

# Runs "$@" ROUNDS times; prints "seconds items peak_kb", items counted by $COUNT after each run.
measure() {
  local items=0 peak=0 start end kb
  start=$(date +%s.%N)
  for r in $(seq "$ROUNDS"); do
    rm -rf "$WORK/run" && mkdir -p "$WORK/run"
    # An import that skips a damaged or unreadable item exits 2; its items still count.
    /usr/bin/time -o "$WORK/kb" -f "%M" "$@" > "$WORK/log" 2>&1 || true
    kb=$(tail -1 "$WORK/kb")
    [ "$kb" -gt "$peak" ] && peak=$kb
    items=$((items + $($COUNT)))
  done
  end=$(date +%s.%N)
  echo "$(echo "$end - $start" | bc) $items $peak"
}
coffer_items() { sed -n 's/^done: imported \([0-9]*\).*/\1/p' "$WORK/log"; }
readpst_items() { find "$WORK/run" -type f | wc -l; }

{
  echo "| file | size | tool | items | seconds | items/s | peak RSS MB |"
  echo "|---|---:|---|---:|---:|---:|---:|"
  for pst in "$COFFER_CORPUS_DIR"/pst/*.pst; do
    name=$(basename "$pst")
    size=$(stat -c %s "$pst")
    COUNT=coffer_items
    read -r secs items peak < <(measure "$COFFER" --data "$WORK/run/data" import --no-journal --mailbox bench@contoso.com "$pst")
    printf '| %s | %d KB | coffer import | %d | %.2f | %.0f | %.0f |\n' "$name" $((size / 1024)) "$items" "$secs" "$(echo "$items / $secs" | bc -l)" "$(echo "$peak / 1024" | bc -l)"
    COUNT=readpst_items
    read -r secs items peak < <(measure readpst -e -q -o "$WORK/run" "$pst")
    printf '| %s | %d KB | readpst -e | %d | %.2f | %.0f | %.0f |\n' "$name" $((size / 1024)) "$items" "$secs" "$(echo "$items / $secs" | bc -l)" "$(echo "$peak / 1024" | bc -l)"
  done
} | tee "$OUT/pst.md"
