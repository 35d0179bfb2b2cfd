#!/usr/bin/env bash
# Attachment extraction benchmark: Coffer's extraction worker (`coffer extract-worker`, one
# process per attachment with its limits, as the indexer runs it) against the text extractors
# other archives use (piler: pdftotext, catdoc, xls2csv, catppt, unrtf; docx2txt, odt2txt), on
# the same documents in the same run. Documents: LibreOffice writes each type from the same
# texts (bodies of SpamAssassin's easy ham, a few pages each).
# Usage: bench/extract.sh [DOCUMENTS_PER_TYPE]   (default 40)
# Needs: COFFER_CORPUS_DIR (../shared/corpora); installs LibreOffice and the peers (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
PER_TYPE=${1:-40}
: "${COFFER_CORPUS_DIR:?set COFFER_CORPUS_DIR to ../shared/corpora}"
export DEBIAN_FRONTEND=noninteractive
for tool in soffice pdftotext catdoc unrtf docx2txt odt2txt; do
  command -v "$tool" >/dev/null && continue
  apt-get install -y -qq --no-install-recommends libreoffice-writer-nogui libreoffice-calc-nogui \
    libreoffice-impress-nogui poppler-utils catdoc unrtf docx2txt odt2txt >/dev/null
  break
done
cargo build --release -q -p coffer
COFFER=$PWD/target/release/coffer
OUT=$PWD/bench/out
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The sources: HTML pages, CSV sheets and flat OpenDocument presentations of the same texts.
python3 - "$COFFER_CORPUS_DIR/spamassassin-public" "$WORK/src" "$PER_TYPE" <<'EOF'
import email, email.policy, html, os, sys
corpus, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out)
files = sorted(os.path.join(d, f) for d, _, names in os.walk(corpus) for f in names if f.endswith('.eml'))
texts, chunk = [], []
for path in files:
    try:
        msg = email.message_from_binary_file(open(path, 'rb'), policy=email.policy.default)
        part = msg.get_body(preferencelist=('plain',))
        body = part.get_content() if part else ''
    except Exception:
        continue
    chunk.append(body)
    if len(chunk) == 12:
        texts.append('\n'.join(chunk)); chunk = []
    if len(texts) == n:
        break
for i, text in enumerate(texts):
    paras = [p.strip() for p in text.split('\n\n') if p.strip()]
    with open(f'{out}/d{i:03}.html', 'w') as f:
        f.write('<html><body>' + ''.join(f'<p>{html.escape(p)}</p>' for p in paras) + '</body></html>')
    with open(f'{out}/d{i:03}.csv', 'w') as f:
        for line in text.splitlines():
            words = line.split()
            if words:
                f.write(','.join('"' + w.replace('"', '') + '"' for w in words[:12]) + '\n')
    slides = ''.join(
        f'<draw:page draw:name="s{j}"><draw:frame svg:x="1cm" svg:y="1cm" svg:width="24cm" svg:height="16cm">'
        f'<draw:text-box><text:p>{html.escape(p[:600])}</text:p></draw:text-box></draw:frame></draw:page>'
        for j, p in enumerate(paras[:20]))
    with open(f'{out}/d{i:03}.fodp', 'w') as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?><office:document '
                'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
                'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
                'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
                'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" office:version="1.2" '
                'office:mimetype="application/vnd.oasis.opendocument.presentation"><office:body>'
                f'<office:presentation>{slides}</office:presentation></office:body></office:document>')
EOF

convert() { # source extension, target type, LibreOffice filter
  mkdir -p "$WORK/$2"
  HOME=$WORK soffice --headless --convert-to "$2:$3" --outdir "$WORK/$2" "$WORK"/src/*."$1" >/dev/null 2>&1
}
convert html pdf writer_pdf_Export
convert html doc "MS Word 97"
convert html docx "MS Word 2007 XML"
convert html odt writer8
convert html rtf "Rich Text Format"
convert csv xls "MS Excel 97"
convert csv xlsx "Calc MS Excel 2007 XML"
convert csv ods calc8
convert fodp ppt "MS PowerPoint 97"
convert fodp pptx "Impress MS PowerPoint 2007 XML"
convert fodp odp impress8

python3 - "$COFFER" "$WORK" "$OUT/extract.md" <<'EOF'
import os, subprocess, sys, time
coffer, work, report = sys.argv[1:4]
peers = {'pdf': ['pdftotext', '{}', '-'], 'doc': ['catdoc', '{}'], 'xls': ['xls2csv', '{}'],
         'ppt': ['catppt', '{}'], 'rtf': ['unrtf', '--text', '{}'], 'docx': ['docx2txt', '{}', '-'],
         'odt': ['odt2txt', '{}'], 'ods': ['odt2txt', '{}'], 'odp': ['odt2txt', '{}']}
rows = []
for kind in ['pdf', 'docx', 'xlsx', 'pptx', 'doc', 'xls', 'ppt', 'odt', 'ods', 'odp', 'rtf']:
    folder = os.path.join(work, kind)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)) if os.path.isdir(folder) else []
    if not files:
        rows.append(f'| {kind} | 0 | LibreOffice wrote none | | | | |'); continue
    size = sum(os.path.getsize(f) for f in files)
    start, chars = time.perf_counter(), 0
    for f in files:
        with open(f, 'rb') as data:
            out = subprocess.run([coffer, 'extract-worker'], stdin=data, capture_output=True, check=True).stdout
        assert out.split(b'\n')[1] == b'ok', (f, out[:200])
        chars += len(out)
    mine = time.perf_counter() - start
    peer, ratio = '', ''
    if kind in peers:
        start = time.perf_counter()
        for f in files:
            subprocess.run([a.replace('{}', f) for a in peers[kind]], capture_output=True)
        theirs = time.perf_counter() - start
        peer, ratio = f'{peers[kind][0]} {len(files) / theirs:,.0f}/s', f'{theirs / mine:.2f}'
    rows.append(f'| {kind} | {len(files)} | {size / len(files) / 1024:,.0f} KB | {len(files) / mine:,.0f}/s | '
                f'{size / mine / 1e6:,.1f} MB/s | {peer} | {ratio} |')
table = ['| type | files | average size | Coffer | Coffer MB/s | peer | Coffer ÷ peer (speed) |',
         '|---|---:|---:|---:|---:|---|---:|'] + rows
open(report, 'w').write('\n'.join(table) + '\n')
print('\n'.join(table))
EOF
