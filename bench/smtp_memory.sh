#!/usr/bin/env bash
# Memory per message over SMTP: COPIES (default 4) journal reports of SIZE_MB (default 40) MB of
# incompressible text sent at once over separate connections; the server's peak RSS (VmHWM) is
# compared with the target 2 × the largest message + 150 MB. One message alone is measured too.
# Writes bench/out/smtp_memory.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
WORK=${BENCH_WORK:-/tmp/coffer-bench-memory}
SIZE_MB=${SIZE_MB:-40}
COPIES=${COPIES:-4}
rm -rf "$WORK" && mkdir -p -m 700 "$WORK" && mkdir -p "$OUT"
cargo build --release -q -p coffer
COFFER=$PWD/target/release/coffer

# Incompressible lines (random hex), so neither compression nor dedup hides the size.
python3 - "$WORK" "$SIZE_MB" "$COPIES" <<'EOF'
import os, sys
work, size_mb, copies = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(copies + 1):
    lines = []
    total = 0
    while total < size_mb * 1_000_000:
        line = os.urandom(38).hex() + "\r\n"
        lines.append(line)
        total += len(line)
    body = "".join(lines)
    msg = f"From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: large {i}\r\nMessage-ID: <large-{i}@contoso.com>\r\n\r\n{body}"
    open(f"{work}/m{i}.eml", "w").write(msg)
EOF

SEND='
import smtplib, sys, threading
port, journal, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
codes = []
def send(path):
    s = smtplib.SMTP("127.0.0.1", port, timeout=600)
    s.ehlo("exchange.test")
    s.mail("MicrosoftExchange@contoso.com")
    s.rcpt(journal)
    codes.append(s.data(open(path, "rb").read())[0])
    s.quit()
threads = [threading.Thread(target=send, args=(f,)) for f in files]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(map(str, sorted(codes))))
'

measure() { # name, files… → prints "peak_mb codes"
  local data="$WORK/data-$1"; shift
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  journal=$(COFFER_JOURNAL_DOMAIN=archive.test "$COFFER" --data "$data" tenant add bench | sed 's/.*journal address: //')
  COFFER_JOURNAL_DOMAIN=archive.test COFFER_SMTP__TLS=off COFFER_MAX_MESSAGE_BYTES=$((SIZE_MB * 2 * 1000000)) \
    "$COFFER" --data "$data" serve --smtp "127.0.0.1:$port" --http 127.0.0.1:0 > "$data.out" 2> "$data.err" &
  local pid=$!
  until grep -q "http listening" "$data.out" 2>/dev/null; do sleep 0.1; done
  local codes
  codes=$(python3 -c "$SEND" "$port" "$journal" "$@")
  local peak
  peak=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  echo "$peak $codes"
}

read -r one_peak one_codes < <(measure one "$WORK/m0.eml")
files=()
for i in $(seq 1 "$COPIES"); do files+=("$WORK/m$i.eml"); done
read -r many_peak many_codes < <(measure many "${files[@]}")
target=$((2 * SIZE_MB + 150))

{
  echo "| load | SMTP answers | peak RSS MB | target MB (2 × largest + 150) | met? |"
  echo "|---|---|---:|---:|---|"
  echo "| 1 × ${SIZE_MB} MB | $one_codes | $one_peak | $target | $([ "$one_peak" -le "$target" ] && echo yes || echo no) |"
  echo "| ${COPIES} × ${SIZE_MB} MB at once | $many_codes | $many_peak | $target | $([ "$many_peak" -le "$target" ] && echo yes || echo no) |"
} > "$OUT/smtp_memory.md"
cat "$OUT/smtp_memory.md"
