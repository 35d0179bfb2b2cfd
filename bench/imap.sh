#!/usr/bin/env bash
# IMAP benchmark: a journal mailbox of N journal reports in Dovecot, pulled by mbsync into a Maildir
# and archived by `coffer imap poll` (durably stored and indexed), in the same run.
# Needs: apt-get install -y dovecot-imapd dovecot-core isync; run as root (Dovecot drops to vmail).
# Usage: bench/imap.sh [N]   (default 20000). Writes bench/out/imap.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
OUT=bench/out
WORK=${BENCH_WORK:-/tmp/coffer-bench-imap}
rm -rf "$WORK" && mkdir -p "$WORK"/{run,state,log,mail} "$OUT"
chmod 755 "$WORK"
cargo build --release -q -p coffer
cargo build --release -q -p coffer-testkit --example gen_maildir
COFFER=$PWD/target/release/coffer
id vmail >/dev/null 2>&1 || useradd -r -U -s /usr/sbin/nologin vmail
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
IMAPS=$(port); IMAP=$(port)

( cd "$WORK" && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
    -keyout key.pem -out cert.pem 2>/dev/null )
echo "journal:$(doveadm pw -s SHA512-CRYPT -p secret1)::::::" > "$WORK/users"
cat > "$WORK/dovecot.conf" <<CONF
base_dir = $WORK/run
state_dir = $WORK/state
instance_name = coffer-bench-$IMAPS
protocols = imap
listen = 127.0.0.1
log_path = $WORK/log/dovecot.log
first_valid_uid = 100
mail_uid = vmail
mail_gid = vmail
mail_location = maildir:$WORK/mail/%u/Maildir
ssl = yes
ssl_cert = <$WORK/cert.pem
ssl_key = <$WORK/key.pem
disable_plaintext_auth = no
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT $WORK/users
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=$WORK/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS
    ssl = yes
  }
}
namespace inbox {
  inbox = yes
  separator = /
}
CONF

# The journal mailbox: N generated messages wrapped as journal reports, written as Maildir files.
"$PWD/target/release/examples/gen_maildir" "$WORK/mail/journal/Maildir" "$N" 11 --journal
chown -R vmail:vmail "$WORK/mail"
raw=$(du -sb "$WORK/mail/journal/Maildir/cur" | cut -f1)
dovecot -F -c "$WORK/dovecot.conf" & DOVECOT=$!
trap 'kill $DOVECOT 2>/dev/null || true' EXIT
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $IMAPS))" 2>/dev/null; do sleep 0.2; done
# Let Dovecot index the mailbox once, so neither client pays for that.
doveadm -c "$WORK/dovecot.conf" mailbox status -u journal messages INBOX

# mbsync: pull the mailbox into a local Maildir (it stores files; no index, no fsync per message).
mkdir -p "$WORK/mbsync/INBOX"
cat > "$WORK/mbsyncrc" <<RC
IMAPAccount bench
Host localhost
Port $IMAPS
User journal
Pass secret1
SSLType IMAPS
CertificateFile $WORK/cert.pem

IMAPStore remote
Account bench

MaildirStore local
Path $WORK/mbsync/
Inbox $WORK/mbsync/INBOX

Channel pull
Far :remote:
Near :local:
Patterns INBOX
Sync Pull
Create Near
SyncState *
RC
start=$(date +%s.%N)
mbsync -q -c "$WORK/mbsyncrc" pull
mbsync_secs=$(echo "$(date +%s.%N) - $start" | bc -l)

# Coffer: the journal mailbox as in production: reports unwrapped, archived, then deleted.
cat > "$WORK/coffer.toml" <<TOML
[[imap]]
name = "bench"
host = "localhost"
port = $IMAPS
security = "imaps"
ca_file = "$WORK/cert.pem"
username = "journal"
password = "secret1"
mode = "journal"
TOML
start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$WORK/coffer.rss" "$COFFER" --data "$WORK/coffer-data" --config "$WORK/coffer.toml" imap poll
coffer_secs=$(echo "$(date +%s.%N) - $start" | bc -l)
stored=$("$COFFER" --data "$WORK/coffer-data" search --count "")
[ "$stored" = "$N" ] || { echo "coffer holds $stored of $N messages: the run does not count" >&2; exit 1; }

{
  echo "| client | messages | seconds | msg/s | MB/s | peak RSS MB |"
  echo "|---|---:|---:|---:|---:|---:|"
  printf "| mbsync (pull into a Maildir) | %d | %.1f | %.0f | %.1f | – |\n" "$N" "$mbsync_secs" "$(echo "$N / $mbsync_secs" | bc -l)" "$(echo "$raw / $mbsync_secs / 1000000" | bc -l)"
  printf "| coffer imap poll (durable + indexed) | %d | %.1f | %.0f | %.1f | %.0f |\n" "$N" "$coffer_secs" "$(echo "$N / $coffer_secs" | bc -l)" "$(echo "$raw / $coffer_secs / 1000000" | bc -l)" "$(echo "$(cat "$WORK/coffer.rss") / 1024" | bc -l)"
  printf "\nratio coffer/mbsync: %.2f\n" "$(echo "$mbsync_secs / $coffer_secs" | bc -l)"
} > "$OUT/imap.md"
cat "$OUT/imap.md"
