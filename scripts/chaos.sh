#!/usr/bin/env bash
# Fault injection against a master and its slaves under a verifying load (prove that
# nothing receipted is ever lost). Builds the release binary, then runs
# `mirrormq chaos --cycles N`: kill -9 of the master, SIGSTOP of the master, kill -9 of
# a slave, SIGSTOP of a slave, in turn, each followed by the automatic restart of the
# broker that went down, which rejoins. Prints lost (must be 0), duplicates and each
# fault's longest receipt stall; exits non-zero on any loss.
#
# Usage: scripts/chaos.sh [CYCLES] [extra `mirrormq chaos` options]
#        CYCLES defaults to 100; e.g. scripts/chaos.sh 8 --interval-ms 500, or
#        scripts/chaos.sh 40 --slaves 2 for a master with two slaves
# Environment: MIRRORMQ=path/to/mirrormq skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES="${1:-100}"
shift || true
if [ -z "${MIRRORMQ:-}" ]; then
  cargo build --release --quiet
  MIRRORMQ=target/release/mirrormq
fi
RUST_LOG="${RUST_LOG:-warn}" exec "$MIRRORMQ" chaos --cycles "$CYCLES" "$@"
