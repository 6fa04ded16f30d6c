#!/usr/bin/env bash
# Stop the test servers of $INFRA_HOME gracefully: infra/down.sh [kafka|cassandra|all] [--wipe]
#   --wipe also deletes that server's state (data, logs, conf) - never the fetched jars.
# Only processes recorded in $INFRA_HOME/*/*.pid whose command line points at this INFRA_HOME are stopped.
# `all` also stops the stacks of `make test`'s second pytest worker, in $INFRA_HOME/stacks/<n>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WHAT=all; WIPE=0
for a in "$@"; do case "$a" in
  all|kafka|cassandra) WHAT="$a" ;; --wipe) WIPE=1 ;;
  *) die 64 "usage: $0 [kafka|cassandra|all] [--wipe]" ;; esac; done

if [ "$WHAT" != cassandra ]; then
  stop_pid kafka "$KAFKA_DIR/kafka.pid" "kafka.Kafka $KAFKA_DIR/conf/server.properties" 60
  if [ "$WIPE" = 1 ]; then rm -rf "$KAFKA_DIR"/{data,logs,conf}; echo "kafka state wiped ($KAFKA_DIR)"; fi
fi
if [ "$WHAT" != kafka ]; then
  stop_pid cassandra "$CASSANDRA_DIR/cassandra.pid" "-Dcassandra.storagedir=$CASSANDRA_DIR " 90
  if [ "$WIPE" = 1 ]; then
    rm -rf "$CASSANDRA_DIR"/{data,commitlog,saved_caches,hints,cdc_raw,logs,conf,tmp,triggers}
    echo "cassandra state wiped ($CASSANDRA_DIR)"
  fi
fi

# `make test` runs two pytest workers; the second keeps a stack of its own in
# $INFRA_HOME/stacks/<n> (tests/conftest.py). `all` stops (and wipes) those too.
if [ "$WHAT" = all ]; then
  for stack in "$INFRA_HOME"/stacks/*/; do
    [ -d "$stack" ] || continue
    echo "test stack $stack:"
    INFRA_HOME="$stack" bash "$HERE/down.sh" all $([ "$WIPE" = 1 ] && echo --wipe)
  done
fi
