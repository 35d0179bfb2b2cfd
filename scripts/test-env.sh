# Sourced before the tests (by scripts/test.sh and .ci/run): installs what the tests talk to —
# Postfix, swaks, Dovecot, Chromium, the Node packages, schemathesis — makes sure PostgreSQL
# answers, and exports the variables that point the tests at it and at the shared corpora.
# Installing needs root (apt-get); on a machine that has everything, it installs nothing.

# Peers the tests talk to: Postfix (sending MTA), swaks and Perl's TLS modules for it, Dovecot (IMAP).
if ! command -v swaks >/dev/null || ! command -v postfix >/dev/null || ! command -v dovecot >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string archive.test" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postfix swaks libnet-ssleay-perl libio-socket-ssl-perl \
    libauthen-sasl-perl dovecot-imapd dovecot-core >/dev/null
fi

# The reference readers of Outlook files the PST/MSG import is checked against: readpst
# (pst-utils) and msgconvert (libemail-outlook-message-perl).
if ! command -v readpst >/dev/null || ! command -v msgconvert >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends pst-utils libemail-outlook-message-perl libemail-address-perl >/dev/null
fi

# The writer of the legacy Office files (DOC, XLS, PPT) the attachment search is checked on:
# LibreOffice, without its desktop parts.
if ! command -v soffice >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends libreoffice-writer-nogui libreoffice-calc-nogui \
    libreoffice-impress-nogui >/dev/null
fi

# OCR of attached pictures and scanned PDFs: Tesseract with its English data, poppler's pdftoppm.
if ! command -v tesseract >/dev/null || ! command -v pdftoppm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends tesseract-ocr tesseract-ocr-eng poppler-utils >/dev/null
fi

# The console's end-to-end tests: Debian's Chromium (driven by playwright-core), an OpenID provider
# (oidc-provider) from npm, schemathesis and requests from PyPI.
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
npm ci --prefix crates/coffer/tests/e2e --no-audit --no-fund --loglevel=error
python3 -m pip install -q --disable-pip-version-check 'schemathesis>=4,<5' requests

# PostgreSQL: the machine starts it before a session; make sure it answers, start it if not.
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
export COFFER_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"

# The shared test corpora sit beside the checkout.
if [ -d ../shared/corpora ]; then
  export COFFER_CORPUS_DIR="$(cd ../shared/corpora && pwd)"
else
  echo "NOTE: ../shared/corpora not found; the corpus sweep is skipped" >&2
  export COFFER_CORPUS_DIR=skip
fi

