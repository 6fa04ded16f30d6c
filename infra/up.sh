#!/usr/bin/env bash
# Bring the local stack up, idempotently: infra/up.sh [all|kafka|cassandra]
#   1. checks the JDK (17; Cassandra 5.0 accepts 11 or 17 only) - exit 2 if missing/wrong
#   2. fetches the jars only if $INFRA_LIB_HOME/*/lib/.fetched is missing or names other versions
#      (needs mvn then - exit 2 if missing)
#   3. starts Cassandra and Kafka in parallel; a server of this INFRA_HOME that is already
#      running is left alone; a port busy with someone else's process is an error.
# Exit 0 when everything is up, 1 if a server failed (its log tail is shown).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WHAT="${1:-all}"
case "$WHAT" in all) SERVERS=(cassandra kafka) ;; kafka|cassandra) SERVERS=("$WHAT") ;;
  *) die 64 "usage: $0 [all|kafka|cassandra]" ;; esac

# One up.sh per INFRA_HOME at a time: a concurrent caller waits, then finds the servers running.
mkdir -p "$INFRA_HOME"; exec 9>"$INFRA_HOME/up.lock"
flock -n 9 || { echo "another infra/up.sh is running for $INFRA_HOME - waiting for it"; flock 9; }

for s in "${SERVERS[@]}"; do "need_${s}_java"; done
echo "java: $JAVA (Java $(java_major))"

for s in "${SERVERS[@]}"; do    # exits 2 if a fetch is needed and mvn is missing
  lib_ok "$s" || bash "$HERE/fetch.sh" "$s" --if-needed
done

pids=(); for s in "${SERVERS[@]}"; do
  # prefix every line with the server name; the subshell's status is the start script's (pipefail).
  # 9>&- : the servers must not inherit the lock.
  ( bash "$HERE/start-$s.sh" 2>&1 9>&- | sed -u "s/^/[$s] /" ) & pids+=($!)
done
failed=(); for i in "${!SERVERS[@]}"; do wait "${pids[$i]}" || failed+=("${SERVERS[$i]}"); done

for s in "${SERVERS[@]}"; do case "$s" in
  kafka)     echo "kafka:     127.0.0.1:$KAFKA_PORT  log $KAFKA_DIR/logs/server.log" ;;
  cassandra) echo "cassandra: 127.0.0.1:$CASSANDRA_PORT  log $CASSANDRA_DIR/logs/system.log" ;; esac; done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED after ${SECONDS} s: ${failed[*]} (log tail above; infra/status.sh; docs/infra.md)" >&2
  exit 1
fi
echo "stack up in ${SECONDS} s (INFRA_HOME=$INFRA_HOME)"
