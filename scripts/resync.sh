#!/usr/bin/env bash
# Manual resync of a master/slave pair (ActiveMQ's recovery for Pure Master Slave):
# copy the surviving broker's data directory over the failed one's.
#
#   scripts/resync.sh FROM_DATA_DIR TO_DATA_DIR
#
# Use it when a broker is refused with "diverged" (its store holds records the other
# never had, e.g. an old master that carried on alone). Stop both brokers first: the
# script refuses while a broker holds the lock of either directory. It keeps what it
# replaces as TO_DATA_DIR.backup-TIMESTAMP, and checks the copy with `mirrormq verify`.
# Then start the surviving broker as master and the resynced one as its slave.
#
# MIRRORMQ names the mirrormq binary (default: target/release/mirrormq beside this
# script's repository, then `mirrormq` on PATH).
set -euo pipefail

die() { echo "resync: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 FROM_DATA_DIR TO_DATA_DIR"
from=${1%/}
to=${2%/}
[ -f "$from/store.toml" ] || die "$from is not a mirrormq data directory (no store.toml)"
[ "$(cd "$from" && pwd -P)" != "$(cd "$to" 2>/dev/null && pwd -P || echo "")" ] || die "FROM and TO are the same directory"

binary=${MIRRORMQ:-}
if [ -z "$binary" ]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [ -x "$here/target/release/mirrormq" ]; then binary="$here/target/release/mirrormq"
  elif command -v mirrormq >/dev/null; then binary=mirrormq
  else die "no mirrormq binary: build it (cargo build --release) or set MIRRORMQ"; fi
fi

# A running broker holds an exclusive flock on DIR/lock for its whole life.
for dir in "$from" "$to"; do
  if [ -e "$dir/lock" ] && ! flock -n "$dir/lock" true; then
    die "a broker holds the lock of $dir (pid $(cat "$dir/lock" 2>/dev/null || echo '?')): stop it first"
  fi
done

"$binary" verify --data-dir "$from" > /dev/null || die "$from does not verify; not copying a damaged store"

stamp=$(date +%Y%m%dT%H%M%S)
staging="$to.resync-$stamp"
rm -rf "$staging"
cp -a "$from" "$staging"
rm -f "$staging/lock"
if [ -e "$to" ]; then
  mv "$to" "$to.backup-$stamp"
  echo "resync: kept the replaced directory as $to.backup-$stamp"
fi
mv "$staging" "$to"
sync

# The copy must read back as the same store, record for record.
expected=$("$binary" verify --data-dir "$from" | grep -v '^torn-tail')
actual=$("$binary" verify --data-dir "$to" | grep -v '^torn-tail')
[ "$expected" = "$actual" ] || die "the copy in $to does not verify like $from"
echo "resync: $to is now a copy of $from:"
echo "$actual" | sed 's/^/  /'
