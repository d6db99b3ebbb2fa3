# Fan-out mode of scripts/bench-peers.sh (sourced; uses its bench, record, start_*,
# stop_group, put_section, log and die): the ActiveMQ features issue's figures.
#
# - topic fan-out: 100 subscribers to one topic (ack auto), subscribed before one
#   producer (window 64) sends N_FANOUT persistent messages: every subscriber gets every
#   message; the rate is deliveries per second, from the first send to the last delivery.
# - selectors: ten consumers of one queue (client-individual acks, prefetch 1000), each
#   selecting a tenth of the messages (`bench_bucket = 'K'`), subscribed before one
#   producer (window 64) sends N_SELECT persistent messages spread over the ten buckets.
#   RabbitMQ has no selectors: it runs the fan-out only.
#
# Each broker runs alone, RUNS times each workload, fresh destinations every run.

N_FANOUT=$([ "$QUICK" = 1 ] && echo 500 || echo 20000)
N_SELECT=$([ "$QUICK" = 1 ] && echo 2000 || echo 30000)
FANOUT_SUBSCRIBERS=100

# fanout_workloads BROKER URL LOGIN PASSCODE [no-selectors]
fanout_workloads() {
  local broker=$1 url=$2 login=$3 pass=$4 only=${5:-} run
  for ((run = 1; run <= RUNS; run++)); do
    bench "$broker-fanout-$run" "$url" "$login" "$pass" fanout \
      --destination "/topic/fanout-$RUN_ID-$run" --consumers "$FANOUT_SUBSCRIBERS" \
      --producers 1 --window 64 --count "$N_FANOUT" --ack auto
    record "$broker" fanout "$run" "$broker-fanout-$run" $((N_FANOUT * FANOUT_SUBSCRIBERS))
    [ "$only" = no-selectors ] && continue
    bench "$broker-select-$run" "$url" "$login" "$pass" fanout \
      --destination "/queue/select-$RUN_ID-$run" --consumers 10 --selectors 10 \
      --producers 1 --window 64 --count "$N_SELECT" --ack client-individual --prefetch 1000
    record "$broker" select "$run" "$broker-select-$run" "$N_SELECT"
  done
}

run_fanout_all() {
  start_pair "$TMP/mirrormq" received
  fanout_workloads mirrormq "$PAIR_URL" admin admin
  check_still_pair "$TMP/mirrormq"
  stop_group pair-
  start_activemq "$TMP/activemq"
  fanout_workloads activemq "$AMQ_URL" guest guest
  stop_group activemq
  start_rabbitmq "$TMP/rabbitmq"
  fanout_workloads rabbitmq "$RMQ_URL" guest guest no-selectors
  stop_group rabbitmq
}

write_fanout_section() {
  V_COMMIT=$(cd "$REPO" && git rev-parse --short HEAD) STARTED_AT=$STARTED_AT RESULTS=$RESULTS \
    RUNS=$RUNS QUICK=$QUICK N_FANOUT=$N_FANOUT N_SELECT=$N_SELECT SUBS=$FANOUT_SUBSCRIBERS \
    PYTHONPATH="$REPO/scripts/lib" python3 - <<'PY' | put_section fanout
import os, statistics
from report import cell, opening, rates as read_rates
e = os.environ
rates = read_rates(e["RESULTS"])
out = opening("fanout", "Fan-out and selectors", e["QUICK"] == "1")
w = out.append
w(f"Written by `scripts/bench-peers.sh fanout` on {e['STARTED_AT']} at `{e['V_COMMIT']}`. "
  "Messages delivered per second, median of "
  f"{e['RUNS']} run(s) (min–max), from the first send to the last delivery; the consumers "
  "subscribe before the producer starts. One producer, window 64, 1024-byte "
  "`persistent:true` messages with receipts. mirrormq is the pair as shipped (every "
  "record mirrored to the slave); ActiveMQ and RabbitMQ are single brokers as in the "
  "throughput table. RabbitMQ has no selectors.")
w("")
w("| workload | mirrormq pair | ActiveMQ | RabbitMQ | pair / best peer | target | met? |")
w("|---|---|---|---|---|---|---|")
for key, label, peers in [
    ("fanout", f"topic, {e['SUBS']} subscribers, auto ack ({e['N_FANOUT']} msgs × {e['SUBS']})",
     ["activemq", "rabbitmq"]),
    ("select", f"queue, 10 consumers each selecting a tenth, client-individual acks ({e['N_SELECT']} msgs)",
     ["activemq"]),
]:
    pair = statistics.median(rates[("mirrormq", key)])
    best = max(statistics.median(rates[(p, key)]) for p in peers)
    ratio = pair / best
    w(f"| {label} | {cell(rates[('mirrormq', key)])} | {cell(rates[('activemq', key)])} | "
      f"{cell(rates[('rabbitmq', key)])} | {ratio:.2f}× | ≥ 3× | {'yes' if ratio >= 3 else '**no**'} |")
w("")
w("In the selector run each message costs two records, its send and its consumer's ACK, "
  "each journaled and mirrored; its one producer waits for receipts, so the rate stays "
  "below the 1-producer, window-64 row of the throughput table.")
w("<!-- fanout:end -->")
print("\n".join(out))
PY
}
