#!/usr/bin/env bash
# Import benchmark: coffer import vs notmuch new vs mu index on the same Maildir, in one run.
# Usage: bench/import.sh [GENERATED_COUNT]   (default 100000)
# Needs: Debian packages notmuch, maildir-utils, time (apt-get install -y notmuch maildir-utils time),
# and COFFER_CORPUS_DIR pointing at ../shared/corpora for the SpamAssassin part.
# Writes bench/out/results.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-100000}
OUT=bench/out
WORK=${BENCH_WORK:-/tmp/coffer-bench}
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"

cargo build --release -q -p coffer
cargo build --release -q -p coffer-testkit --example gen_maildir
cargo build --release -q -p coffer-archive --example search_latency
COFFER=$PWD/target/release/coffer

# (a) SpamAssassin public corpus as a Maildir; (b) a generated corpus.
corpus_a="$WORK/spamassassin"
mkdir -p "$corpus_a/cur" "$corpus_a/new" "$corpus_a/tmp"
if [ -n "${COFFER_CORPUS_DIR:-}" ]; then
  i=0
  for f in "$COFFER_CORPUS_DIR"/spamassassin-public/*/*.eml; do
    cp "$f" "$corpus_a/cur/$(printf %06d $i).sa:2,S"; i=$((i+1))
  done
fi
corpus_b="$WORK/generated"
./target/release/examples/gen_maildir "$corpus_b" "$COUNT" 7

measure() { # name, then the command; prints "seconds peak_rss_kb"
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" > "$WORK/$name.log" 2>&1
  cat "$WORK/$name.time"
}

du_bytes() { du -sb "$@" 2>/dev/null | awk '{s+=$1} END {print s+0}'; }

{
echo "| corpus | tool | messages | seconds | msg/s | MB/s | peak RSS MB | store bytes / raw | index bytes / raw |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
} > "$OUT/results.md"

for corpus in "$corpus_a" "$corpus_b"; do
  name=$(basename "$corpus")
  n=$(ls "$corpus/cur" | wc -l)
  [ "$n" -gt 0 ] || continue
  raw=$(du_bytes "$corpus/cur")
  mb=$(echo "$raw / 1000000" | bc -l)

  # Coffer: durable store + catalog + index, until everything is searchable.
  data="$WORK/$name-coffer"
  read -r secs rss < <(measure "$name-coffer" "$COFFER" --data "$data" import "$corpus")
  store=$(du_bytes "$data/volumes")
  catalog=$(du_bytes "$data"/catalog.sqlite*)
  index=$(du_bytes "$data/index")
  printf "| %s | coffer | %d | %.1f | %.0f | %.1f | %.0f | %.1f%% (+catalog %.1f%%) | %.1f%% |\n" "$name" "$n" "$secs" \
    "$(echo "$n / $secs" | bc -l)" "$(echo "$mb / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)" \
    "$(echo "100 * $store / $raw" | bc -l)" "$(echo "100 * $catalog / $raw" | bc -l)" "$(echo "100 * $index / $raw" | bc -l)" >> "$OUT/results.md"
  ./target/release/examples/search_latency "$data" 20 > "$OUT/search-$name.txt"

  # notmuch
  export NOTMUCH_CONFIG="$WORK/$name-notmuch.cfg"
  printf "[database]\npath=%s\n[new]\ntags=inbox;\n" "$corpus" > "$NOTMUCH_CONFIG"
  rm -rf "$corpus/.notmuch"
  read -r secs rss < <(measure "$name-notmuch" notmuch new --quiet)
  index=$(du_bytes "$corpus/.notmuch")
  printf "| %s | notmuch new | %d | %.1f | %.0f | %.1f | %.0f | (keeps the files) | %.1f%% |\n" "$name" "$n" "$secs" \
    "$(echo "$n / $secs" | bc -l)" "$(echo "$mb / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$(echo "100 * $index / $raw" | bc -l)" >> "$OUT/results.md"
  rm -rf "$corpus/.notmuch"

  # mu
  muhome="$WORK/$name-mu"
  mu init --muhome="$muhome" --maildir="$corpus" > /dev/null
  read -r secs rss < <(measure "$name-mu" mu index --muhome="$muhome" --quiet)
  index=$(du_bytes "$muhome")
  printf "| %s | mu index | %d | %.1f | %.0f | %.1f | %.0f | (keeps the files) | %.1f%% |\n" "$name" "$n" "$secs" \
    "$(echo "$n / $secs" | bc -l)" "$(echo "$mb / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$(echo "100 * $index / $raw" | bc -l)" >> "$OUT/results.md"
done

cat "$OUT/results.md"
for f in "$OUT"/search-*.txt; do echo; echo "$f"; cat "$f"; done
