#!/usr/bin/env bash
# The one test command (README): the set-up the tests need (scripts/test-env.sh), then every
# test. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-env.sh

# Every crate, unless the arguments pick some (`-p coffer-web`).
case " $* " in
  *" -p "*|*" --package "*|*" --package="*) cargo test --locked "$@" ;;
  *) cargo test --workspace --locked "$@" ;;
esac
