# TLS mode of scripts/bench-peers.sh (sourced; uses its bench, record, start_pair,
# start_activemq, stop_group, put_section, log and die): the TLS issue's figures. The
# 1-producer (waiting for each receipt) and 8-producer window-64 workloads over plain TCP,
# TLS, WebSocket and WebSocket over TLS, alternating run by run on the same brokers: the
# pair (stomp.tls_bind, ws_bind and wss_bind on both brokers, failover URLs of ssl://,
# ws:// and wss:// addresses) and ActiveMQ (its stomp+ssl connector beside the stomp
# one). Certificates: scripts/gen-certs.sh; ActiveMQ's keystore
# is the same broker certificate as PKCS#12. Every client trusts the CA (MIRRORMQ_CA).

tls_workloads() { # BROKER TAG-SUFFIX URL LOGIN PASSCODE RUN
  local broker=$1 suffix=$2 url=$3 login=$4 pass=$5 run=$6 q=/queue/tls-$RUN_ID-$6-$2
  bench "$broker-$suffix-p1w1-$run" "$url" "$login" "$pass" produce --destination "$q-p1w1" \
    --producers 1 --window 1 --count "$N_P1W1"
  record "$broker-$suffix" p1w1 "$run" "$broker-$suffix-p1w1-$run" "$N_P1W1"
  bench "$broker-$suffix-p8w64-$run" "$url" "$login" "$pass" produce --destination "$q-p8w64" \
    --producers 8 --window 64 --count "$N_P8W64"
  record "$broker-$suffix" p8w64 "$run" "$broker-$suffix-p8w64-$run" $((8 * N_P8W64))
  # Untimed: what piles up would otherwise reach ActiveMQ's memory limit, whose producer
  # flow control then holds the next run's producers until a consumer comes (forever).
  drain_queue "$broker-$suffix-drain1-$run" "$url" "$login" "$pass" "$q-p1w1" "$N_P1W1"
  drain_queue "$broker-$suffix-drain8-$run" "$url" "$login" "$pass" "$q-p8w64" $((8 * N_P8W64))
}

run_tls_all() {
  local certs=$TMP/certs run m_tls s_tls m_ws s_ws m_wss s_wss amq_ssl
  "$REPO/scripts/gen-certs.sh" "$certs" >&2
  export MIRRORMQ_CA=$certs/ca.pem
  read -r m_tls s_tls m_ws s_ws m_wss s_wss amq_ssl <<<"$(free_ports 7)"
  PAIR_STOMP_M="tls_bind = \"tcp://127.0.0.1:$m_tls\"
ws_bind = \"tcp://127.0.0.1:$m_ws\"
wss_bind = \"tcp://127.0.0.1:$m_wss\""
  PAIR_STOMP_S="tls_bind = \"tcp://127.0.0.1:$s_tls\"
ws_bind = \"tcp://127.0.0.1:$s_ws\"
wss_bind = \"tcp://127.0.0.1:$s_wss\""
  PAIR_SECTIONS="[tls]
cert = \"$certs/broker.pem\"
key = \"$certs/broker.key\""
  start_pair "$TMP/mirrormq" received
  local tls_url="failover:(ssl://127.0.0.1:$m_tls,ssl://127.0.0.1:$s_tls)?randomize=false"
  local ws_url="failover:(ws://127.0.0.1:$m_ws,ws://127.0.0.1:$s_ws)?randomize=false"
  local wss_url="failover:(wss://127.0.0.1:$m_wss,wss://127.0.0.1:$s_wss)?randomize=false"
  for ((run = 1; run <= RUNS; run++)); do
    tls_workloads mirrormq tcp "$PAIR_URL" admin admin "$run"
    tls_workloads mirrormq tls "$tls_url" admin admin "$run"
    tls_workloads mirrormq ws "$ws_url" admin admin "$run"
    tls_workloads mirrormq wss "$wss_url" admin admin "$run"
  done
  check_still_pair "$TMP/mirrormq"
  stop_group pair-
  openssl pkcs12 -export -in "$certs/broker.pem" -inkey "$certs/broker.key" \
    -out "$certs/broker.p12" -passout pass:benchpeers -name broker 2>/dev/null ||
    die "could not make ActiveMQ's PKCS#12 keystore"
  AMQ_SSL_CONNECTOR="<transportConnector name=\"stomp+ssl\" uri=\"stomp+ssl://127.0.0.1:$amq_ssl?transport.closeAsync=false\"/>"
  AMQ_SSL_CONTEXT="<sslContext><sslContext keyStore=\"file:$certs/broker.p12\" keyStorePassword=\"benchpeers\" keyStoreType=\"PKCS12\"/></sslContext>"
  start_activemq "$TMP/activemq"
  wait_port "$amq_ssl" "$AMQ_PID" "ActiveMQ's stomp+ssl connector" "$START_WAIT"
  local amq_tls="failover:(ssl://127.0.0.1:$amq_ssl)?startupMaxReconnectAttempts=2"
  for ((run = 1; run <= RUNS; run++)); do
    tls_workloads activemq tcp "$AMQ_URL" guest guest "$run"
    tls_workloads activemq tls "$amq_tls" guest guest "$run"
  done
  stop_group activemq
}

write_tls_section() {
  V_COMMIT=$(cd "$REPO" && git rev-parse --short HEAD) STARTED_AT=$STARTED_AT RESULTS=$RESULTS \
    RUNS=$RUNS QUICK=$QUICK N_P1W1=$N_P1W1 N_P8W64=$N_P8W64 \
    PYTHONPATH="$REPO/scripts/lib" python3 - <<'PY' | put_section tls
import os, statistics
import report
e = os.environ
rates = report.rates(e["RESULTS"])
med = lambda b, w: statistics.median(rates[(b, w)])
cell = lambda b, w: report.cell(rates[(b, w)])
out = report.opening("tls", "TLS", e["QUICK"] == "1")
w = out.append
w(f"Written by `scripts/bench-peers.sh tls` on {e['STARTED_AT']} at `{e['V_COMMIT']}`. "
  f"Messages per second, median of {e['RUNS']} run(s) (min–max), plain TCP and TLS "
  "alternating run by run on the same brokers: the pair (`stomp.tls_bind` on both, the "
  "failover URL of `ssl://` addresses, certificates from `scripts/gen-certs.sh`) and "
  "ActiveMQ (its `stomp+ssl` connector, the same certificate as a PKCS#12 keystore). "
  "1024-byte `persistent:true` messages with receipts. Targets: TLS costs the pair at "
  "most 15%, and the pair over TLS leads ActiveMQ over TLS by at least its plain-TCP "
  "ratio (within 15%).")
w("")
w("| workload | pair, TCP | pair, TLS | TLS cost | ActiveMQ, TCP | ActiveMQ, TLS | pair / ActiveMQ, TCP | pair / ActiveMQ, TLS | met? |")
w("|---|---|---|---|---|---|---|---|---|")
for k, label in [("p1w1", f"1 producer, waits for each receipt ({e['N_P1W1']} msgs)"),
                 ("p8w64", f"8 producers, window 64 (8 × {e['N_P8W64']})")]:
    cost = 1 - med("mirrormq-tls", k) / med("mirrormq-tcp", k)
    tcp_ratio = med("mirrormq-tcp", k) / med("activemq-tcp", k)
    tls_ratio = med("mirrormq-tls", k) / med("activemq-tls", k)
    met = cost <= 0.15 and tls_ratio >= 0.85 * tcp_ratio
    w(f"| {label} | {cell('mirrormq-tcp', k)} | {cell('mirrormq-tls', k)} | {cost * 100:.0f}% | "
      f"{cell('activemq-tcp', k)} | {cell('activemq-tls', k)} | {tcp_ratio:.2f}× | {tls_ratio:.2f}× | "
      f"{'yes' if met else '**no**'} |")
w("")
w("STOMP over WebSocket on the pair, in the same runs (`stomp.ws_bind` and `wss_bind`, "
  "the failover URL of `ws://` and `wss://` addresses; each STOMP frame one WebSocket "
  "message). ActiveMQ's WebSocket connector is not measured.")
w("")
w("| workload | pair, TCP | pair, WebSocket | cost | pair, WebSocket over TLS | cost |")
w("|---|---|---|---|---|---|")
for k, label in [("p1w1", "1 producer, waits for each receipt"), ("p8w64", "8 producers, window 64")]:
    base = med("mirrormq-tcp", k)
    w(f"| {label} | {cell('mirrormq-tcp', k)} | {cell('mirrormq-ws', k)} | "
      f"{(1 - med('mirrormq-ws', k) / base) * 100:.0f}% | {cell('mirrormq-wss', k)} | "
      f"{(1 - med('mirrormq-wss', k) / base) * 100:.0f}% |")
w("<!-- tls:end -->")
print("\n".join(out))
PY
}
