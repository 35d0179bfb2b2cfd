#!/usr/bin/env bash
# Index lag under SMTP load, with attachments to read: N messages, each with a DOCX or a PDF that
# holds a word of its own and a word they share, go to `coffer serve` over 8 SMTP connections
# (smtplib); the script notes when the last one was acknowledged (durably stored) and polls
# `coffer search --count` until every attachment's word is searchable.
# Usage: bench/index_lag.sh [N]   (default 2000). Writes bench/out/index_lag.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
OUT=bench/out
WORK=$(mktemp -d)
trap 'kill "$CPID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
cargo build --release -q -p coffer
COFFER=$PWD/target/release/coffer
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
JOURNAL=$(COFFER_JOURNAL_DOMAIN=archive.test "$COFFER" --data "$WORK/data" tenant add bench | sed 's/.*journal address: //')
COFFER_JOURNAL_DOMAIN=archive.test COFFER_SMTP__MAX_CONNECTIONS_PER_IP=100 \
  COFFER_SMTP__MAX_CONNECTIONS_PER_MINUTE_PER_IP=100000000 \
  "$COFFER" --data "$WORK/data" serve --smtp "127.0.0.1:$PORT" --http 127.0.0.1:0 > "$WORK/out" 2> "$WORK/err" &
CPID=$!
until grep -q "smtp listening" "$WORK/out" 2>/dev/null; do sleep 0.1; done

python3 - "$PORT" "$JOURNAL" "$N" "$COFFER" "$WORK/data" "$OUT/index_lag.md" <<'EOF'
import base64, io, smtplib, subprocess, sys, threading, time, zipfile, zlib
port, journal, n, coffer, data, report = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]

def docx(words):
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('[Content_Types].xml', '<Types/>')
        z.writestr('word/document.xml', '<w:document><w:body>' + ''.join(
            f'<w:p><w:r><w:t>{w}</w:t></w:r></w:p>' for w in words) + '</w:body></w:document>')
    return out.getvalue()

def pdf(words):
    content = zlib.compress(('BT /F1 12 Tf 72 700 Td (' + ' '.join(words) + ') Tj ET').encode())
    objs = [b'<< /Type /Catalog /Pages 2 0 R >>', b'<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
            b'<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>',
            b'<< /Length %d /Filter /FlateDecode >>\nstream\n' % len(content) + content + b'\nendstream']
    out, offsets = b'%PDF-1.4\n', []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out)); out += b'%d 0 obj\n' % i + o + b'\nendobj\n'
    xref = len(out)
    out += b'xref\n0 %d\n0000000000 65535 f \n' % (len(objs) + 1) + b''.join(b'%010d 00000 n \n' % o for o in offsets)
    return out + b'trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n' % (len(objs) + 1, xref)

def message(i):
    words = ['lagcommon', f'lagword{i}'] + [f'filler{j}' for j in range(200)]
    name, kind, body = (f'report{i}.docx', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', docx(words)) \
        if i % 2 == 0 else (f'report{i}.pdf', 'application/pdf', pdf(words))
    b64 = base64.encodebytes(body).decode()
    return (f'From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: report {i}\r\nMessage-ID: <lag{i}@contoso.com>\r\n'
            f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
            f'See attached.\r\n--b\r\nContent-Type: {kind}; name="{name}"\r\nContent-Disposition: attachment; filename="{name}"\r\n'
            f'Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n').encode()

def count(query):
    out = subprocess.run([coffer, '--data', data, 'search', '--tenant', 'bench', '--count', query], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)

messages = [message(i) for i in range(n)]
size = sum(len(m) for m in messages)
lags = []
def send(part):
    s = smtplib.SMTP('127.0.0.1', port)
    for i in range(part, n, 8):
        s.sendmail('alice@contoso.com', [journal], messages[i])
    s.quit()
start = time.perf_counter()
threads = [threading.Thread(target=send, args=(p,)) for p in range(8)]
for t in threads: t.start()
# While the load runs: how far behind the acknowledged mail the searchable attachments are.
samples = []
while any(t.is_alive() for t in threads):
    time.sleep(1)
    samples.append((time.perf_counter() - start, count('lagcommon')))
for t in threads: t.join()
acked = time.perf_counter() - start
while count('attachment:lagcommon') < n:
    time.sleep(0.2)
done = time.perf_counter() - start
assert count(f'attachment:lagword{n - 1}') == 1
rows = ['| messages | attachments | MB | acknowledged after | msg/s | all searchable after | lag after the last 250 |',
        '|---:|---|---:|---:|---:|---:|---:|',
        f'| {n:,} | half DOCX, half PDF | {size / 1e6:.1f} | {acked:.1f} s | {n / acked:,.0f} | {done:.1f} s | {done - acked:.1f} s |']
rows += ['', 'During the load (seconds since the start: messages searchable by their attachment):', '',
         ', '.join(f'{t:.0f} s: {c:,}' for t, c in samples)]
open(report, 'w').write('\n'.join(rows) + '\n')
print('\n'.join(rows))
EOF
