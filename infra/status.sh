#!/usr/bin/env bash
# Show the state of the test servers of $INFRA_HOME. Exit 0 if all are running, else 3.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rc=0
show() {  # <name> <pidfile> <cmdline-substring> <port> <other ports text> <data dir> <log>
  local pid state
  if pid="$(our_pid "$2" "$3")"; then
    if port_open "$4"; then state=running; else state="starting/unresponsive (port $4 not answering)"; rc=3; fi
  else
    pid=-; rc=3; state=stopped
    port_open "$4" && state="stopped (but port $4 is in use by another process: $(port_owner "$4" || true))"
  fi
  printf '%s: %s\n  pid:  %s\n  port: %s%s\n  data: %s\n  log:  %s\n' "$1" "$state" "$pid" "$4" "$5" "$6" "$7"
}
show kafka "$KAFKA_DIR/kafka.pid" "kafka.Kafka $KAFKA_DIR/conf/server.properties" \
  "$KAFKA_PORT" " (controller $KAFKA_CONTROLLER_PORT)" "$KAFKA_DIR/data" "$KAFKA_DIR/logs/server.log"
show cassandra "$CASSANDRA_DIR/cassandra.pid" "-Dcassandra.storagedir=$CASSANDRA_DIR " \
  "$CASSANDRA_PORT" " (storage $CASSANDRA_STORAGE_PORT)" "$CASSANDRA_DIR/data" "$CASSANDRA_DIR/logs/system.log"
exit "$rc"
