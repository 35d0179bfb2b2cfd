#!/usr/bin/env bash
# SMTP benchmark: Postfix's smtp-source against smtp-sink (stores nothing: the ceiling) and against
# Coffer (every message durably stored and indexed), 20 sessions, 4 KiB and 64 KiB messages; then
# the generator's journal-report mix over 8 connections with the time from end of DATA to 250.
# Needs the postfix package (smtp-source, smtp-sink). Writes bench/out/smtp.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
WORK=${BENCH_WORK:-/tmp/coffer-bench-smtp}
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
cargo build --release -q -p coffer
cargo build --release -q -p coffer-smtp --example smtp_load
COFFER=$PWD/target/release/coffer
N4=${N4:-20000}
N64=${N64:-4000}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_source() { # port size count → seconds
  local start end
  start=$(date +%s.%N)
  smtp-source -s 20 -m "$3" -l "$2" -f a@example.com -t "$JOURNAL" "127.0.0.1:$1"
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

start_coffer() { # data dir → sets CPID, CPORT
  CPORT=$(port)
  JOURNAL=$(COFFER_JOURNAL_DOMAIN=archive.test "$COFFER" --data "$1" tenant add bench | sed 's/.*journal address: //')
  # smtp-source opens a connection per message: lift the per-address limits for the run.
  COFFER_JOURNAL_DOMAIN=archive.test COFFER_SMTP__MAX_CONNECTIONS_PER_IP=100 \
    COFFER_SMTP__MAX_CONNECTIONS_PER_MINUTE_PER_IP=100000000 \
    "$COFFER" --data "$1" serve --smtp "127.0.0.1:$CPORT" > "$1.out" 2> "$1.err" &
  CPID=$!
  until grep -q "smtp listening" "$1.out" 2>/dev/null; do sleep 0.1; done
}

stop_coffer() { kill -TERM "$CPID"; wait "$CPID" || true; }

peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

echo "| load | sink msg/s | coffer msg/s | ratio (msg/s) | sink MB/s | coffer MB/s | ratio (MB/s) | coffer peak RSS MB |" > "$OUT/smtp.md"
echo "|---|---:|---:|---:|---:|---:|---:|---:|" >> "$OUT/smtp.md"
for spec in "4096 $N4" "65536 $N64"; do
  set -- $spec
  size=$1 count=$2
  JOURNAL=journal-x@archive.test
  SPORT=$(port)
  smtp-sink -u nobody "127.0.0.1:$SPORT" 1000 & SINK=$!
  sleep 0.3
  sink_secs=$(run_source "$SPORT" "$size" "$count")
  kill "$SINK"; wait "$SINK" 2>/dev/null || true

  start_coffer "$WORK/coffer-$size"
  coffer_secs=$(run_source "$CPORT" "$size" "$count")
  rss=$(peak_rss_mb "$CPID")
  stop_coffer
  stored=$("$COFFER" --data "$WORK/coffer-$size" search --tenant bench --count "")
  if [ "$stored" != "$count" ]; then echo "coffer holds $stored of $count messages: the run does not count" >&2; exit 1; fi
  printf "| smtp-source, 20 sessions, %d B | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f | %s |\n" "$size" \
    "$(echo "$count / $sink_secs" | bc -l)" "$(echo "$count / $coffer_secs" | bc -l)" "$(echo "$sink_secs / $coffer_secs" | bc -l)" \
    "$(echo "$count * $size / $sink_secs / 1000000" | bc -l)" "$(echo "$count * $size / $coffer_secs / 1000000" | bc -l)" \
    "$(echo "$sink_secs / $coffer_secs" | bc -l)" "$rss" >> "$OUT/smtp.md"
done

start_coffer "$WORK/coffer-journal"
echo >> "$OUT/smtp.md"
echo "Journal-report mix: $(./target/release/examples/smtp_load "127.0.0.1:$CPORT" "$JOURNAL" "${NJ:-10000}" 8); coffer peak RSS $(peak_rss_mb "$CPID") MB" >> "$OUT/smtp.md"
stop_coffer
cat "$OUT/smtp.md"
