#!/usr/bin/env bash
# Start a single-node KRaft Kafka (controller+broker) on 127.0.0.1:$KAFKA_PORT, in the background.
# Idempotent: if this INFRA_HOME's broker is already running and answering, says so and exits 0.
# Env (defaults in common.sh): KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_SASL_PORT KAFKA_SASL_USER
#      KAFKA_HEAP KAFKA_START_TIMEOUT
#      INFRA_HOME INFRA_LIB_HOME JAVA17_HOME; KAFKA_FRESH=1 wipes data and logs first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
K="$KAFKA_DIR"; PIDF="$K/kafka.pid"; MATCH="kafka.Kafka $K/conf/server.properties"
PORT="$KAFKA_PORT"; CPORT="$KAFKA_CONTROLLER_PORT"; SPORT="$KAFKA_SASL_PORT"

if pid="$(our_pid "$PIDF" "$MATCH")"; then
  if port_open "$PORT"; then echo "kafka already running (pid $pid, port $PORT) - left alone"; exit 0; fi
  echo "kafka pid $pid is up but port $PORT not answering yet - waiting for it"
  wait_ready kafka "$pid" "$PORT" "$K/logs/server.log" "Kafka Server started" "$KAFKA_START_TIMEOUT"; exit
fi
need_kafka_java
lib_ok kafka || die 1 "no complete $KAFKA_LIB for Kafka $KAFKA_VERSION - run infra/fetch.sh kafka (or infra/up.sh)"
require_free kafka "$PORT" "$CPORT" "$SPORT"
rm -f "$PIDF"
[ "${KAFKA_FRESH:-0}" = 1 ] && rm -rf "$K/data" "$K/logs"
mkdir -p "$K/data" "$K/logs" "$K/conf"
# The SASL listener's password: generated once per INFRA_HOME, never in the repository.
if [ ! -s "$K/sasl.password" ]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$K/sasl.password")
fi
SPASS="$(cat "$K/sasl.password")"
rotate "$K/logs/server.log" "$K/logs/stdout.log"
(umask 077; sed -e "s#@DATA@#$K/data#" -e "s#@PORT@#$PORT#g" -e "s#@CPORT@#$CPORT#g" \
    -e "s#@SPORT@#$SPORT#g" -e "s#@SUSER@#$KAFKA_SASL_USER#g" -e "s#@SPASS@#$SPASS#g" \
    "$HERE/kafka/server.properties" > "$K/conf/server.properties")

if ls "$KAFKA_LIB"/log4j-core-*.jar >/dev/null 2>&1; then     # 4.x: log4j2
  LOG=(-Dlog4j2.configurationFile="$HERE/kafka/log4j2.xml")
else                                                          # 3.x: reload4j
  LOG=(-Dlog4j.configuration="file:$HERE/kafka/log4j.properties")
fi
COMMON=(-Djava.awt.headless=true -Dkafka.logs.dir="$K/logs" "${LOG[@]}" -cp "$KAFKA_LIB/*")

# bin/kafka-storage.sh == kafka-run-class.sh kafka.tools.StorageTool. Format once per data dir.
if [ ! -f "$K/data/meta.properties" ]; then
  # Cluster id = 16 random bytes, base64url, no padding (what `StorageTool random-uuid` prints);
  # never starting with '-' (Kafka's Uuid.randomUuid avoids that too, it breaks CLI parsing).
  CID="$(python3 -c 'import base64,uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"): break
print(s)')"
  "$JAVA" -Xmx256m "${COMMON[@]}" kafka.tools.StorageTool format \
      --cluster-id "$CID" --config "$K/conf/server.properties" >"$K/logs/format.log" 2>&1 \
    || { cat "$K/logs/format.log" >&2; exit 1; }
fi

# Same JVM flags as bin/kafka-server-start.sh + kafka-run-class.sh (minus JMX and GC-log files).
nohup setsid "$JAVA" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
    "${COMMON[@]}" kafka.Kafka "$K/conf/server.properties" \
    >"$K/logs/stdout.log" 2>&1 </dev/null &
echo $! >"$PIDF"
echo "kafka starting (pid $!, port $PORT, log $K/logs/server.log)"
wait_ready kafka "$!" "$PORT" "$K/logs/server.log" "Kafka Server started" "$KAFKA_START_TIMEOUT" \
  || { stop_pid kafka "$PIDF" "$MATCH" 30 >&2; exit 1; }
