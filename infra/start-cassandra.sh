#!/usr/bin/env bash
# Start a single-node Cassandra on 127.0.0.1:$CASSANDRA_PORT (CQL), in the background.
# Idempotent: if this INFRA_HOME's node is already running and answering, says so and exits 0.
# Env (defaults in common.sh): CASSANDRA_PORT CASSANDRA_STORAGE_PORT CASSANDRA_HEAP CASSANDRA_START_TIMEOUT
#      INFRA_HOME INFRA_LIB_HOME JAVA17_HOME; CASSANDRA_JMX_PORT (unset = no JMX/nodetool);
#      CASSANDRA_FRESH=1 wipes data and logs first; CASSANDRA_AUTH=1 turns on PasswordAuthenticator
#      (default superuser cassandra/cassandra, created at start: change it on anything shared);
#      CASSANDRA_UNSAFE_SYSTEM=1 skips the fsync of system tables (faster, not crash-safe).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
C="$CASSANDRA_DIR"; PIDF="$C/cassandra.pid"; MATCH="-Dcassandra.storagedir=$C "
PORT="$CASSANDRA_PORT"; SPORT="$CASSANDRA_STORAGE_PORT"; HEAP="$CASSANDRA_HEAP"

if pid="$(our_pid "$PIDF" "$MATCH")"; then
  if port_open "$PORT"; then echo "cassandra already running (pid $pid, port $PORT) - left alone"; exit 0; fi
  echo "cassandra pid $pid is up but port $PORT not answering yet - waiting for it"
  wait_ready cassandra "$pid" "$PORT" "$C/logs/system.log" "Startup complete" "$CASSANDRA_START_TIMEOUT"; exit
fi
need_cassandra_java
lib_ok cassandra || die 1 "no complete $CASSANDRA_LIB for Cassandra $CASSANDRA_VERSION - run infra/fetch.sh cassandra (or infra/up.sh)"
require_free cassandra "$PORT" "$SPORT"
rm -f "$PIDF"
[ "${CASSANDRA_FRESH:-0}" = 1 ] && rm -rf "$C"/{data,commitlog,saved_caches,hints,cdc_raw,logs}
mkdir -p "$C"/{data,commitlog,saved_caches,hints,cdc_raw,logs,conf,tmp,triggers}
rotate "$C/logs/system.log" "$C/logs/stdout.log"
sed -e "s#@DIR@#$C#g" -e "s#@PORT@#$PORT#g" -e "s#@SPORT@#$SPORT#g" \
    "$HERE/cassandra/cassandra.yaml" >"$C/conf/cassandra.yaml"
if [ "${CASSANDRA_AUTH:-0}" = 1 ]; then
  printf '\n# CASSANDRA_AUTH=1\nauthenticator: PasswordAuthenticator\n' >>"$C/conf/cassandra.yaml"
fi
cp "$HERE/cassandra/logback.xml" "$C/conf/logback.xml"
JAMM="$(ls "$CASSANDRA_LIB"/jamm-*.jar | awk 'NR==1')"
# Preload jemalloc like bin/cassandra does, if the host has it; else say so (silences a startup WARN).
JEMALLOC="$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so* /usr/lib64/libjemalloc.so* 2>/dev/null | head -n1 || true)"

# conf/jvm17-server.options + jvm11-server.options (JPMS part, union - all valid on 11 and 17)
JPMS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
  --add-exports java.base/jdk.internal.util=ALL-UNNAMED
  --add-exports java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
)
OPTS=(
  -Xms"$HEAP" -Xmx"$HEAP" -Xss256k
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:MaxGCPauseMillis=300
  -XX:InitiatingHeapOccupancyPercent=70 -XX:G1RSetUpdatingPauseTimePercent=5 -XX:+UseCondCardMark
  -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem -XX:+HeapDumpOnOutOfMemoryError
  -XX:HeapDumpPath="$C/logs" -XX:+ExitOnOutOfMemoryError
  -ea -da:net.openhft... -Djava.net.preferIPv4Stack=true
  -javaagent:"$JAMM"
  "${JPMS[@]}"
  -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
  -Dcassandra.config="file://$C/conf/cassandra.yaml"
  -Dcassandra.storagedir="$C" -Dcassandra.logdir="$C/logs"
  -Dlogback.configurationFile="$C/conf/logback.xml"
  -Dcassandra-foreground=yes                  # otherwise CassandraDaemon closes stdout/stderr
  -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.initial_token=0
  -Djna.tmpdir="$C/tmp"                       # JNA must load or a startup check aborts the node
  -Dcassandra.triggers_dir="$C/triggers"      # else a "Trigger directory doesn't exist" WARN
  -Dcassandra.libjemalloc="${JEMALLOC:--}"    # "-" = preload explicitly disabled
)
[ "${CASSANDRA_AUTH:-0}" = 1 ] && OPTS+=(-Dcassandra.superuser_setup_delay_ms=0)
# CASSANDRA_UNSAFE_SYSTEM=1: no fsync of system tables (schema changes ~2x faster), but a
# kill -9 then loses recent schema changes: keyspaces that half exist after a restart
# (found by `settlement chaos`). Off by default.
[ "${CASSANDRA_UNSAFE_SYSTEM:-0}" = 1 ] && OPTS+=(-Dcassandra.unsafesystem=true)
[ -n "${CASSANDRA_JMX_PORT:-}" ] && OPTS+=(-Dcassandra.jmx.local.port="$CASSANDRA_JMX_PORT" \
                                          -Dcom.sun.management.jmxremote.authenticate=false)

LD_PRELOAD="${JEMALLOC:-${LD_PRELOAD:-}}" MALLOC_ARENA_MAX=4 nohup setsid "$JAVA" "${OPTS[@]}" \
    -cp "$C/conf:$CASSANDRA_LIB/*" org.apache.cassandra.service.CassandraDaemon \
    >"$C/logs/stdout.log" 2>&1 </dev/null &
echo $! >"$PIDF"
echo "cassandra starting (pid $!, port $PORT, storage port $SPORT, log $C/logs/system.log)"
wait_ready cassandra "$!" "$PORT" "$C/logs/system.log" "Startup complete" "$CASSANDRA_START_TIMEOUT" \
  || { stop_pid cassandra "$PIDF" "$MATCH" 60 >&2; exit 1; }
