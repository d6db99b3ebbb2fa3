#!/usr/bin/env bash
# Soak test of a mirrormq master/slave pair (issue 6, item 6): DURATION seconds of mixed
# load through the failover URL while each broker's RSS, open file descriptors, threads
# and journal disk use are sampled every 5 s; they must stay flat.
#
#   scripts/soak.sh            # 600 s (10 minutes) of load
#   scripts/soak.sh 60         # a one-minute check of the script
#
# The pair runs from configs made from configs/master.toml and configs/slave.toml (every
# value the same, only the ports and data directories changed: free 127.0.0.1 ports and a
# fresh `mktemp -d` folder). Once the master logs `slave in sync`, the load runs; every
# message is persistent:true and waits for its receipt (so for the slave's copy):
#   - a roundtrip loop: 2 producers and 2 consumers at once on a queue, 100-byte bodies;
#   - a produce + consume loop: 2 producers and 2 consumers, started together, on a
#     second queue, 4 KiB bodies; each round consumes exactly what it produced;
#   - a topic: 1 producer in a loop, 1 subscriber held for the whole run and 1 that
#     subscribes, takes 200 messages and leaves, over and over (subscription churn).
# Consumers ack each message (client-individual). Each round drains what it sent, so the
# queues stay near empty: a steady state, not a backlog. Every `mirrormq bench` run is a
# fresh client, so connections open and close all the time.
#
# Writes to OUT (default docs/soak/): soak.csv (one row per sample), soak.png (RSS, open
# fds and journal size of both brokers against time) and soak.md (machine, commit, load,
# a table per metric and broker, the verdict). Exits 1 if a metric grew (thresholds at
# "Flat or not" below), a load run failed, a broker died or the master lost its slave.
#
# Everything listens on 127.0.0.1 only. The script stops what it started, by the pid it
# recorded, on success, error or Ctrl-C, and signals nothing else. Progress goes to stderr.
#
# Needs: bash, python3 (matplotlib is installed with pip if missing), coreutils, setsid,
# cargo (unless MIRRORMQ is set).
#
# Environment (all optional):
#   MIRRORMQ=PATH    the mirrormq binary (default: `cargo build --release`, then
#                    target/release/mirrormq); it is copied into the temp folder first
#   SOAK_OUT=DIR     where to write soak.csv, soak.png and soak.md (default docs/soak)
#   SOAK_KEEP=1      keep the temp folder (configs, broker logs, raw bench output); it is
#                    always kept when the script fails
#   TMPDIR           where the temp folder is made; the brokers' journals are there
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${1:-600}
[[ $DURATION =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 30 ] ||
  { echo "usage: $0 [DURATION_SECONDS >= 30]" >&2; exit 2; }
OUT=${SOAK_OUT:-$REPO/docs/soak}
INTERVAL=5        # seconds between samples
BENCH_TIMEOUT=120 # no single load run may take longer (one normally takes a few seconds)
LOGIN=admin PASSCODE=admin

# The load (see the header). Counts are per producer (bench) or per round.
RT_DEST=/queue/soak-small RT_PRODUCERS=2 RT_CONSUMERS=2 RT_COUNT=1000 RT_SIZE=100 RT_WINDOW=8 RT_PREFETCH=200
PC_DEST=/queue/soak-large PC_PRODUCERS=2 PC_COUNT=250 PC_SIZE=4096 PC_WINDOW=4 PC_CONSUMERS=2 PC_PREFETCH=50
TP_DEST=/topic/soak-events TP_COUNT=500 TP_SIZE=100 TP_WINDOW=2 TP_CHURN_COUNT=200

log() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
KEEP=${SOAK_KEEP:-0}
KEPT_WHAT="configs, logs and raw load output"
# shellcheck source=lib/processes.sh
source "$REPO/scripts/lib/processes.sh"

# ---------------------------------------------------------------- prerequisites
command -v python3 >/dev/null || die "python3 is needed (sampling sums and the report)"
command -v setsid >/dev/null || die "setsid (util-linux) is needed"
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  log "installing matplotlib with pip (for soak.png)"
  python3 -m pip install --quiet matplotlib >&2 || die "pip install matplotlib failed"
fi

if [ -z "${MIRRORMQ:-}" ]; then
  log "building mirrormq (cargo build --release)"
  (cd "$REPO" && cargo build --release --quiet)
  MIRRORMQ=$REPO/target/release/mirrormq
fi
[ -x "$MIRRORMQ" ] || die "MIRRORMQ=$MIRRORMQ is not an executable"
for f in master slave; do
  [ -f "$REPO/configs/$f.toml" ] || die "no configs/$f.toml"
done

TMP=$(mktemp -d -t soak.XXXXXX)
mkdir -p "$TMP/bin" "$TMP/runs" "$TMP/pair"
# A private copy: a rebuild during the run cannot swap the binary under the brokers.
cp "$MIRRORMQ" "$TMP/bin/mirrormq"
MMQ=$TMP/bin/mirrormq
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg) # what else was running: 1, 5, 15 min
log "temp folder $TMP; $DURATION s of load, a sample every $INTERVAL s"

# ---------------------------------------------------------------- the pair
DIR=$TMP/pair
read -r M_STOMP M_REPL S_STOMP S_REPL <<<"$(free_ports 4)"
refuse_used "$M_STOMP" "$M_REPL" "$S_STOMP" "$S_REPL"
# The shipped configs with only their addresses and data directories changed, so the
# soak runs every other value exactly as shipped (worker_threads, segment_size, ...).
sed -e "s|^data_dir = .*|data_dir = \"master-data\"|" \
  -e "s|tcp://127.0.0.1:61613|tcp://127.0.0.1:$M_STOMP|" \
  -e "s|tcp://127.0.0.1:62001|tcp://127.0.0.1:$M_REPL|" \
  "$REPO/configs/master.toml" >"$DIR/master.toml"
sed -e "s|^data_dir = .*|data_dir = \"slave-data\"|" \
  -e "s|tcp://127.0.0.1:61623|tcp://127.0.0.1:$S_STOMP|" \
  -e "s|tcp://127.0.0.1:62001|tcp://127.0.0.1:$M_REPL|" \
  -e "s|tcp://127.0.0.1:62002|tcp://127.0.0.1:$S_REPL|" \
  "$REPO/configs/slave.toml" >"$DIR/slave.toml"
for f in master slave; do
  # a changed shipped config must not leave the soak on the fixed ports or the repo's data/
  ! grep -Ev '^[[:space:]]*#' "$DIR/$f.toml" | grep -Eq '6161[0-9]|6162[0-9]|6200[0-9]|\.\./data' ||
    die "configs/$f.toml no longer has the expected binds/data_dir; update the sed in $0"
  grep -q "^data_dir = \"$f-data\"" "$DIR/$f.toml" || die "configs/$f.toml has no data_dir line"
done

MASTER=$(spawn "$DIR/master.log" "$DIR/master.pid" "$DIR" env RUST_LOG=info "$MMQ" broker --config "$DIR/master.toml")
register pair-master "$MASTER" "$DIR/master.toml" 15
wait_log "$DIR/master.log" "stomp: listening" "$MASTER" 30
SLAVE=$(spawn "$DIR/slave.log" "$DIR/slave.pid" "$DIR" env RUST_LOG=info "$MMQ" broker --config "$DIR/slave.toml")
register pair-slave "$SLAVE" "$DIR/slave.toml" 15
wait_log "$DIR/master.log" "slave in sync" "$MASTER" 30
wait_log "$DIR/slave.log" "-> slave-mirroring" "$SLAVE" 30
log "pair: master pid $MASTER (127.0.0.1:$M_STOMP), slave pid $SLAVE (127.0.0.1:$S_STOMP), in sync"
URL="failover:(tcp://127.0.0.1:$M_STOMP,tcp://127.0.0.1:$S_STOMP)?randomize=false"

# ---------------------------------------------------------------- the load
# Each worker is a subshell looping until the stop file exists. Its client processes run
# in the background and are waited for, so that a SIGTERM to the worker (handled by its
# trap) stops them at once. A failed or timed-out run is counted in runs/failures and
# the loop goes on; any failure fails the soak.
STOP=$TMP/stop
failed() { # WORKER RC
  printf '%s %s rc=%s\n' "$(date -u +%H:%M:%S)" "$1" "$2" >>"$TMP/runs/failures"
  sleep 1
}
# mmq_bg WORKER ARGS...: `mirrormq ARGS` under a timeout, JSON/bodies to runs/WORKER.out
mmq_bg() {
  local w=$1
  shift
  timeout "$BENCH_TIMEOUT" "$MMQ" "$@" --url "$URL" --login "$LOGIN" --passcode "$PASSCODE" \
    >>"$TMP/runs/$w.out" 2>>"$TMP/runs/$w.log" &
}
worker_roundtrip() {
  local c=""
  trap '[ -z "$c" ] || kill -TERM $c 2>/dev/null; exit 143' TERM
  while [ ! -e "$STOP" ]; do
    mmq_bg roundtrip bench roundtrip --json --destination "$RT_DEST" --producers "$RT_PRODUCERS" \
      --consumers "$RT_CONSUMERS" --count "$RT_COUNT" --size "$RT_SIZE" --window "$RT_WINDOW" \
      --ack client-individual --prefetch "$RT_PREFETCH"
    c=$!
    wait "$c" || failed roundtrip $?
    c=""
  done
}
worker_prodcons() {
  local p="" c=""
  trap 'kill -TERM $p $c 2>/dev/null; exit 143' TERM
  while [ ! -e "$STOP" ]; do
    mmq_bg consume bench consume --json --destination "$PC_DEST" --consumers "$PC_CONSUMERS" \
      --count $((PC_PRODUCERS * PC_COUNT)) --size "$PC_SIZE" --ack client-individual --prefetch "$PC_PREFETCH"
    c=$!
    mmq_bg produce bench produce --json --destination "$PC_DEST" --producers "$PC_PRODUCERS" \
      --count "$PC_COUNT" --size "$PC_SIZE" --window "$PC_WINDOW"
    p=$!
    wait "$p" || failed produce $?
    wait "$c" || failed consume $?
    p="" c=""
  done
}
worker_topic_producer() {
  local c=""
  trap '[ -z "$c" ] || kill -TERM $c 2>/dev/null; exit 143' TERM
  while [ ! -e "$STOP" ]; do
    mmq_bg topic-produce bench produce --json --destination "$TP_DEST" --producers 1 \
      --count "$TP_COUNT" --size "$TP_SIZE" --window "$TP_WINDOW"
    c=$!
    wait "$c" || failed topic-produce $?
    c=""
  done
}
# subscribes, takes TP_CHURN_COUNT messages, leaves; again. Stopped by SIGTERM at the end
# (its last run may wait for messages that no producer sends any more).
worker_topic_churn() {
  local c="" rc
  trap '[ -z "$c" ] || kill -TERM $c 2>/dev/null; exit 143' TERM
  while :; do
    mmq_bg topic-churn bench consume --json --destination "$TP_DEST" --consumers 1 \
      --count "$TP_CHURN_COUNT" --size "$TP_SIZE" --ack client-individual
    c=$!
    rc=0
    wait "$c" || rc=$?
    [ "$rc" = 0 ] || [ -e "$STOP" ] || failed topic-churn "$rc"
    c=""
  done
}

# One row per sample: the load's second, then per broker VmRSS (KiB), open fds, threads,
# journal bytes (du -sb of DATA/journal: apparent size, segments are preallocated) and
# journal files, then messages sent to and received from the queues and the topic by the
# load runs finished at the sample (from their JSON; the held topic subscriber's count
# from its progress line, printed every second).
CSV=$TMP/soak.csv
echo "t_s,phase,master_rss_kib,master_fds,master_threads,master_journal_bytes,master_journal_files,slave_rss_kib,slave_fds,slave_threads,slave_journal_bytes,slave_journal_files,queue_sent,queue_received,topic_sent,topic_received" >"$CSV"
proc_stats() { # PID -> "rss_kib,fds,threads"
  local rss threads fds
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$1/status")
  fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "$rss,$fds,$threads"
}
journal_stats() { # DATA_DIR -> "bytes,files"
  local j=$1/journal
  [ -d "$j" ] || j=$1
  echo "$(du -sb "$j" | cut -f1),$(find "$j" -maxdepth 1 -type f | wc -l)"
}
counts() { # -> "queue_sent,queue_received,topic_sent,topic_received"
  python3 - "$TMP/runs" <<'PY'
import json, os, re, sys
d = sys.argv[1]
n = {"queue_sent": 0, "queue_received": 0, "topic_sent": 0, "topic_received": 0}
for name in os.listdir(d):
    if not name.endswith(".out"):
        continue
    kind = "topic" if name.startswith("topic-") else "queue"
    for line in open(os.path.join(d, name)):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if r["mode"] in ("produce", "roundtrip"):
            n[kind + "_sent"] += r["messages"]
        if r["mode"] in ("consume", "roundtrip"):
            n[kind + "_received"] += r["messages"]
# the held subscriber never finishes: its last "received N/..." progress line
try:
    held = re.findall(r"^received (\d+)/", open(os.path.join(d, "topic-hold.log")).read(), re.M)
    n["topic_received"] += int(held[-1]) if held else 0
except OSError:
    pass
print(",".join(str(v) for v in n.values()))
PY
}
sample() { # T PHASE
  local b pid row="$1,$2"
  for b in master slave; do
    if [ "$b" = master ]; then pid=$MASTER; else pid=$SLAVE; fi
    alive "$pid" || die "the $b (pid $pid) died; see $DIR/$b.log"
    row+=",$(proc_stats "$pid"),$(journal_stats "$DIR/$b-data")"
  done
  echo "$row,$(counts)" >>"$CSV"
}

sample 0 idle-before
log "load: roundtrip on $RT_DEST, produce + consume on $PC_DEST, topic $TP_DEST; $DURATION s"
# (no timeout, and a count never reached: it stays subscribed for the whole run)
"$MMQ" bench consume --destination "$TP_DEST" --consumers 1 --count 1000000000000 --size "$TP_SIZE" \
  --ack client-individual --url "$URL" --login "$LOGIN" --passcode "$PASSCODE" \
  >"$TMP/runs/topic-hold.txt" 2>"$TMP/runs/topic-hold.log" &
register topic-hold $! "$MMQ bench consume" 5
worker_topic_churn &
register worker-topic-churn $! "soak.sh" 10
sleep 1 # both topic subscriptions are in place before the first topic message
worker_roundtrip &
register worker-roundtrip $! "soak.sh" 10
worker_prodcons &
register worker-prodcons $! "soak.sh" 10
worker_topic_producer &
register worker-topic-producer $! "soak.sh" 10

LOAD_START=$(date +%s%N)
N_SAMPLES=$((DURATION / INTERVAL))
for ((i = 0; i <= N_SAMPLES; i++)); do
  target_ns=$((LOAD_START + i * INTERVAL * 1000000000))
  wait_ns=$((target_ns - $(date +%s%N)))
  [ "$wait_ns" -le 0 ] || sleep "$(printf '%d.%09d' $((wait_ns / 1000000000)) $((wait_ns % 1000000000)))"
  sample $((i * INTERVAL)) load
  if ((i > 0 && i * INTERVAL % 60 == 0)); then
    log "$(tail -n 1 "$CSV" | awk -F, '{printf "t=%ss master rss %.1f MiB fds %s journal %.0f MiB | slave rss %.1f MiB fds %s journal %.0f MiB | queues %s sent %s received | topic %s sent %s received", $1, $3/1024, $4, $6/1048576, $8/1024, $9, $11/1048576, $13, $14, $15, $16}')"
  fi
done

# Let the rounds in progress finish (each drains what it sent), then the topic subscribers.
log "load time over; letting the rounds in progress finish"
touch "$STOP"
deadline=$(($(date +%s) + BENCH_TIMEOUT + 10))
for w in worker-roundtrip worker-prodcons worker-topic-producer; do
  pid=$(pid_of "$w")
  while [ -n "$pid" ] && alive "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
done
sleep 2 # the last topic messages reach the subscribers
stop_group worker-
stop_group topic-hold
LOAD_S=$((($(date +%s%N) - LOAD_START) / 1000000000))
# Idle again: every client is gone. Open fds should be back where they were before.
sleep 10
sample "$LOAD_S" idle-after

# The master must have kept its slave throughout: otherwise this was not the pair's soak.
LOST_SLAVE=0
if grep -F "role: master-with-slave ->" "$DIR/master.log" >&2; then LOST_SLAVE=1; fi
STATUS_LINE=$(grep -F "status: role" "$DIR/master.log" | tail -n 1 | sed 's/^.*status: /status: /')
stop_group pair-
# What is left in each store: the queues should be (nearly) empty.
for b in master slave; do
  "$MMQ" verify --data-dir "$DIR/$b-data" >"$TMP/verify-$b.txt" 2>&1 ||
    log "warning: mirrormq verify of the $b's store failed (see $TMP/verify-$b.txt)"
done
FAILURES=0
[ ! -f "$TMP/runs/failures" ] || FAILURES=$(wc -l <"$TMP/runs/failures")
[ "$FAILURES" = 0 ] || { log "failed load runs:"; cat "$TMP/runs/failures" >&2; }

# ---------------------------------------------------------------- the report
mkdir -p "$OUT"
cp "$CSV" "$OUT/soak.csv"
export OUT DURATION INTERVAL STARTED_AT LOADAVG_START FAILURES LOST_SLAVE STATUS_LINE TMP
export RT_DEST RT_PRODUCERS RT_CONSUMERS RT_COUNT RT_SIZE RT_WINDOW RT_PREFETCH
export PC_DEST PC_PRODUCERS PC_COUNT PC_SIZE PC_WINDOW PC_CONSUMERS PC_PREFETCH
export TP_DEST TP_COUNT TP_SIZE TP_WINDOW TP_CHURN_COUNT
export M_NPROC M_CPU M_MEM M_KERNEL M_OS V_GIT V_COMMIT V_BIN
M_NPROC=$(nproc)
M_CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
M_CPU=${M_CPU:-$(uname -m)}
M_MEM=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
M_KERNEL=$(uname -sr)
M_OS=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || echo "?")
V_GIT=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "?")
V_COMMIT=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo "?")
V_BIN=$("$MMQ" --version)

set +e
python3 - <<'PY'
import csv, os, re, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

e = os.environ
out, dur = e["OUT"], int(e["DURATION"])
rows = list(csv.DictReader(open(os.path.join(out, "soak.csv"))))
load = [r for r in rows if r["phase"] == "load"]
before = next(r for r in rows if r["phase"] == "idle-before")
after = next((r for r in rows if r["phase"] == "idle-after"), None)
t = [int(r["t_s"]) for r in load]

# ---- Flat or not. The baseline is the mean of the samples from 20% to 40% of the run
# (the first 20% is warm-up: allocator arenas, prefetch buffers and the first journal
# segments fill); the end is the mean of the last 20%. Thresholds:
# - RSS: the end may exceed the baseline by 25%, or by 4 MiB if that is more (a broker
#   of ~15 MiB wobbles by a MiB or two with the messages in flight and the allocator's
#   caches). The load moves millions of messages in 10 minutes, so a leak of a few bytes
#   per message, or of a few KiB per connection, passes both.
# - Open fds: +20. Each client connection is one fd on the master and the load holds
#   about 10 at a time, more or fewer as runs start and end; a leak of one fd per
#   connection (the load opens hundreds a minute) passes 20 within seconds.
# - Journal: the end may be at most 2 x the baseline, or the baseline plus two segments
#   (segment_size, 32 MiB), whichever is larger: disk moves in whole preallocated
#   segments (the one being written plus any older one still holding an unacked
#   message), so one or two more at a sample is normal, while segments that are never
#   reclaimed add one every few seconds at this load.
# - Threads: +4. The broker runs a fixed set (worker_threads, the journal writer, ...);
#   a thread per connection or per segment would pass 4 at once.
SEGMENT = 32 * 1024 * 1024
def window(lo, hi):
    return [r for r in load if lo * dur <= int(r["t_s"]) <= hi * dur]
base_rows, end_rows = window(0.2, 0.4), window(0.8, 1.0)
post = window(0.2, 1.0)
metrics = [  # key, label, unit, scale, check(base, end) -> failed?
    ("rss_kib", "RSS", "MiB", 1 / 1024, lambda b, z: z > 1.25 * b and z - b > 4),
    ("fds", "open fds", "", 1, lambda b, z: z - b > 20),
    ("journal_bytes", "journal", "MiB", 1 / 1048576, lambda b, z: z > max(2 * b, b + 2 * SEGMENT / 1048576)),
    ("threads", "threads", "", 1, lambda b, z: z - b > 4),
]
def mean(xs):
    return sum(xs) / len(xs)
def fmt(v, unit):
    return f"{v:,.1f} {unit}".strip() if unit else f"{v:,.0f}" if v == int(v) else f"{v:,.1f}"
table, problems = [], []
for b in ("master", "slave"):
    for key, label, unit, scale, bad in metrics:
        col = f"{b}_{key}"
        val = lambda r: float(r[col]) * scale
        base, end = mean([val(r) for r in base_rows]), mean([val(r) for r in end_rows])
        pv = [val(r) for r in post]
        growth = end - base
        pct = 100 * growth / base if base else 0.0
        failed = bad(base, end)
        if failed:
            problems.append(f"{b} {label} grew from {fmt(base, unit)} to {fmt(end, unit)} ({pct:+.0f}%)")
        table.append((b, label, unit, val(post[0]), val(load[-1]), min(pv), max(pv), base, end, growth, pct, failed))
if int(e["FAILURES"]):
    problems.append(f"{e['FAILURES']} load run(s) failed or timed out")
if e["LOST_SLAVE"] == "1":
    problems.append("the master lost its slave during the run (not the pair's soak)")
verdict = "FLAT" if not problems else "NOT FLAT: " + "; ".join(problems)

# ---- throughput: sent/received by the end of the run, and rates in the two windows
def sent(r):
    return int(r["queue_sent"]) + int(r["topic_sent"])
def rate(rs):  # msg/s between the first and last sample of rs, as text
    if len(rs) < 2:
        return "–"
    return f"{(sent(rs[-1]) - sent(rs[0])) / (int(rs[-1]['t_s']) - int(rs[0]['t_s'])):,.0f}"
last = after or load[-1]
q_sent, q_recv = int(last["queue_sent"]), int(last["queue_received"])
t_sent, t_recv = int(last["topic_sent"]), int(last["topic_received"])

# ---- the plot
fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
minutes = [x / 60 for x in t]
for ax, (key, label, unit, scale) in zip(axes, [("rss_kib", "RSS", "MiB", 1 / 1024),
                                                 ("fds", "open fds", "", 1),
                                                 ("journal_bytes", "journal on disk", "MiB", 1 / 1048576)]):
    for b, colour in (("master", "tab:blue"), ("slave", "tab:orange")):
        ax.plot(minutes, [float(r[f"{b}_{key}"]) * scale for r in load], label=b, color=colour,
                lw=1.6 if b == "master" else 1.3, ls="-" if b == "master" else "--")
    ax.axvspan(0.2 * dur / 60, 0.4 * dur / 60, color="green", alpha=0.07)
    ax.axvspan(0.8 * dur / 60, dur / 60, color="red", alpha=0.07)
    ax.set_ylabel(f"{label} ({unit})" if unit else label)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", framealpha=0.9)
axes[-1].set_xlabel("minutes of load (green: baseline window, red: end window)")
fig.suptitle(f"mirrormq pair, {dur} s soak: {verdict.split(':')[0]}", fontsize=12)
fig.tight_layout()
fig.savefig(os.path.join(out, "soak.png"), dpi=100)

# ---- what the stores held at the end
def queues(path):
    try:
        text = open(path).read()
    except OSError:
        return "?"
    return text
depths = {b: queues(os.path.join(e["TMP"], f"verify-{b}.txt")) for b in ("master", "slave")}

w = []
p = w.append
p("# Soak: the mirrormq pair under mixed load")
p("")
p("Written by `scripts/soak.sh`; do not edit by hand, run the script again.")
p("")
p(f"**Verdict: {verdict}.**")
p("")
p(f"- **Date:** {e['STARTED_AT']} (UTC); {dur} s of load ({dur / 60:.1f} min), a sample every {e['INTERVAL']} s.")
p(f"- **Machine:** {e['M_NPROC']} CPUs ({e['M_CPU']}), {e['M_MEM']} RAM, {e['M_KERNEL']}, {e['M_OS']};")
p(f"  load average {e['LOADAVG_START']} (1, 5, 15 min) just before the brokers started.")
p(f"- **mirrormq:** `{e['V_GIT']}` (commit {e['V_COMMIT']}), {e['V_BIN']}.")
p("- **Pair:** a master and a slave from `configs/master.toml` and `configs/slave.toml`, every")
p("  value as shipped (32 MiB segments, 1 worker thread, ...) but free 127.0.0.1 ports and")
p("  data in a temporary folder; the load starts once the master logs `slave in sync`, so")
p("  every receipt waits for both journals' fsync.")
p("")
p("## Load")
p("")
p("Through `failover:(tcp://127.0.0.1:MASTER,tcp://127.0.0.1:SLAVE)?randomize=false`, all at")
p("once, each loop starting its next run as soon as the last one ends; every message")
p("`persistent:true` with a receipt, every consumer acking each message (`client-individual`):")
p("")
p(f"- `mirrormq bench roundtrip` on `{e['RT_DEST']}`: {e['RT_PRODUCERS']} producers × {e['RT_COUNT']} messages of")
p(f"  {e['RT_SIZE']} B (window {e['RT_WINDOW']}) and {e['RT_CONSUMERS']} consumers (prefetch {e['RT_PREFETCH']}) at once, in a loop.")
p(f"- `mirrormq bench produce` + `mirrormq bench consume`, started together, on `{e['PC_DEST']}`:")
p(f"  {e['PC_PRODUCERS']} producers × {e['PC_COUNT']} messages of {int(e['PC_SIZE']) // 1024} KiB (window {e['PC_WINDOW']}), {e['PC_CONSUMERS']} consumers")
p(f"  (prefetch {e['PC_PREFETCH']}) taking exactly as many, in a loop.")
p(f"- Topic `{e['TP_DEST']}`: `mirrormq bench produce`, 1 producer × {e['TP_COUNT']} messages of {e['TP_SIZE']} B")
p(f"  (window {e['TP_WINDOW']}) in a loop; two `mirrormq bench consume` subscribers: one held for the")
p(f"  whole run, one that subscribes, takes {e['TP_CHURN_COUNT']} messages and disconnects, in a loop.")
p("")
p("Each run is a new client, so connections open and close all the time. Each round drains")
p("what it sent, so the queues stay near empty: a steady state.")
p("")
p(f"Messages, counted from the runs' JSON: {q_sent:,} sent to the two queues and {q_recv:,}")
p(f"received from them; {t_sent:,} sent to the topic and {t_recv:,} delivered to its two subscribers.")
p(f"Send rate (queues and topic): {rate(load)} msg/s over the run, {rate(base_rows)} msg/s")
p(f"in the baseline window, {rate(end_rows)} msg/s in the end window.")
p("")
p("## Resources")
p("")
p("Sampled from `/proc/PID/status` (VmRSS, Threads), `/proc/PID/fd` and `du -sb` of each")
p("broker's `journal/` (apparent size: segments are preallocated, so it moves 32 MiB at a")
p("time). *Baseline* is the mean of the samples from 20% to 40% of the run (after warm-up),")
p("*end* the mean of the last 20%; min and max are over the samples after warm-up (20%–100%).")
p("")
p("| broker | metric | first after warm-up | last | min | max | baseline mean | end mean | growth | flat? |")
p("|---|---|---|---|---|---|---|---|---|---|")
for b, label, unit, first, lastv, lo, hi, base, end, growth, pct, failed in table:
    p(f"| {b} | {label}{' (' + unit + ')' if unit else ''} | {fmt(first, '')} | {fmt(lastv, '')} | {fmt(lo, '')} | "
      f"{fmt(hi, '')} | {fmt(base, '')} | {fmt(end, '')} | {growth:+,.1f} ({pct:+.1f}%) | {'**no**' if failed else 'yes'} |")
p("")
p("Thresholds (see `scripts/soak.sh`): RSS end ≤ baseline + 25% (or + 4 MiB, whichever is")
p("larger); open fds end ≤ baseline + 20; journal end ≤ 2 × baseline (or + 2 segments,")
p("whichever is larger); threads end ≤ baseline + 4. Also: no load run may fail and the")
p("master must keep its slave throughout.")
p("")
if after:
    p(f"Idle, before the load and 10 s after it (every client gone):")
    p("")
    p("| broker | RSS before → after (MiB) | open fds before → after | threads before → after | journal before → after (MiB) |")
    p("|---|---|---|---|---|")
    for b in ("master", "slave"):
        g = lambda r, k, s=1: float(r[f"{b}_{k}"]) * s
        p(f"| {b} | {g(before, 'rss_kib', 1/1024):.1f} → {g(after, 'rss_kib', 1/1024):.1f} | "
          f"{g(before, 'fds'):.0f} → {g(after, 'fds'):.0f} | {g(before, 'threads'):.0f} → {g(after, 'threads'):.0f} | "
          f"{g(before, 'journal_bytes', 1/1048576):.0f} → {g(after, 'journal_bytes', 1/1048576):.0f} |")
    p("")
if e.get("STATUS_LINE"):
    p(f"The master's last status line: `{e['STATUS_LINE']}`.")
    p("")
p("What each store held after the brokers stopped (`mirrormq verify`):")
p("")
for b in ("master", "slave"):
    p(f"{b}:")
    p("")
    p("```")
    p(depths[b].rstrip())
    p("```")
    p("")
p("![soak](soak.png)")
p("")
p("The raw samples are in [soak.csv](soak.csv): per broker VmRSS (KiB), open fds, threads,")
p("journal bytes and files, then the messages sent and received by the runs finished at")
p("each sample (`phase` = `idle-before`, `load` or `idle-after`).")
p("")
p("## How to reproduce")
p("")
p("```sh")
p("scripts/soak.sh          # 600 s; writes docs/soak/")
p("scripts/soak.sh 60       # a one-minute check of the script")
p("```")
p("")
p("Options (environment): `MIRRORMQ=path` (skip the build), `SOAK_OUT=dir`, `SOAK_KEEP=1`")
p("(keep the temp folder with configs, logs and raw output), `TMPDIR`. Run it on a quiet")
p("machine: the load generator shares the CPUs with both brokers.")
with open(os.path.join(out, "soak.md"), "w") as f:
    f.write("\n".join(w) + "\n")

print(f"verdict: {verdict}", file=sys.stderr)
for b, label, unit, first, lastv, lo, hi, base, end, growth, pct, failed in table:
    print(f"  {b:6} {label:9} baseline {base:10,.1f} end {end:10,.1f} growth {growth:+9,.1f} ({pct:+.1f}%) "
          f"min {lo:,.1f} max {hi:,.1f} {'FAIL' if failed else 'ok'} {unit}", file=sys.stderr)
print(f"  queues: sent {q_sent:,} received {q_recv:,}; topic: sent {t_sent:,} delivered {t_recv:,}; "
      f"{rate(load)} msg/s sent (baseline {rate(base_rows)}, end {rate(end_rows)})", file=sys.stderr)
sys.exit(10 if problems else 0)
PY
RC=$?
set -e
[ "$RC" = 0 ] || [ "$RC" = 10 ] || die "the report failed (python exit $RC)"
log "wrote $OUT/soak.md, soak.png and soak.csv"
[ "$RC" = 0 ] || exit 1 # not flat: the temp folder's logs are kept
OK=1
