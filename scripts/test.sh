#!/usr/bin/env bash
# The README's test command: installs what the tests need when missing
# (scripts/test-deps.sh), then runs every test. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh
cargo test "$@"
