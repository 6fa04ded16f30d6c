# Sourced by the infra/*.sh scripts: every knob with its default, JDK selection, port/pid helpers.
# All paths are made absolute (mvn and the JVMs resolve relative paths against other directories).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_HOME="$(realpath -m "${INFRA_HOME:-$HERE/../.infra}")"        # pid files, conf, data, logs
INFRA_LIB_HOME="$(realpath -m "${INFRA_LIB_HOME:-$INFRA_HOME}")"    # fetched jars: <this>/{kafka,cassandra}/lib
KAFKA_VERSION="${KAFKA_VERSION:-4.1.0}"
CASSANDRA_VERSION="${CASSANDRA_VERSION:-5.0.8}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9094}"            # SASL_PLAINTEXT (PLAIN) listener
KAFKA_SASL_USER="${KAFKA_SASL_USER:-settlement}"
CASSANDRA_PORT="${CASSANDRA_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
CASSANDRA_HEAP="${CASSANDRA_HEAP:-1G}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
CASSANDRA_START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-240}"
KAFKA_DIR="$INFRA_HOME/kafka";         KAFKA_LIB="$INFRA_LIB_HOME/kafka/lib"
CASSANDRA_DIR="$INFRA_HOME/cassandra"; CASSANDRA_LIB="$INFRA_LIB_HOME/cassandra/lib"

die() { local rc="$1"; shift; echo "error: $*" >&2; exit "$rc"; }

# --- JDK -------------------------------------------------------------------------------------
# Pinned explicitly: `java` on PATH may be another JDK (this machine also has a Temurin 25, which
# Cassandra 5.0 refuses: it supports 11 and 17 only; Kafka 4.x needs 17+). Order: $JAVA, then
# $JAVA17_HOME/bin/java (an explicitly set but broken JAVA17_HOME is an error), then `java` on PATH.
JAVA17_DEFAULT=/usr/lib/jvm/java-17-openjdk-amd64
JDK_HINT="install a JDK 17 (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless) or set JAVA17_HOME=/path/to/jdk17"
resolve_java() {
  if [ -n "${JAVA:-}" ]; then return 0; fi
  if [ -n "${JAVA17_HOME:-}" ]; then
    [ -x "$JAVA17_HOME/bin/java" ] || die 2 "JAVA17_HOME=$JAVA17_HOME has no bin/java; $JDK_HINT"
    JAVA="$JAVA17_HOME/bin/java"
  elif [ -x "$JAVA17_DEFAULT/bin/java" ]; then JAVA="$JAVA17_DEFAULT/bin/java"
  else JAVA="$(command -v java || true)"
  fi
  [ -n "$JAVA" ] || die 2 "java not found (not in $JAVA17_DEFAULT, not on PATH); $JDK_HINT"
}
java_major() {  # "17.0.15" -> 17, "1.8.0_402" -> 8
  local v; v="$("$JAVA" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n1)"
  case "$v" in 1.*) v="${v#1.}" ;; esac
  echo "${v%%[.+-]*}"
}
need_java() {   # need_java <what> <allowed major>...
  local what="$1" m a; shift; resolve_java
  m="$(java_major)"
  for a in "$@"; do [ "$m" = "$a" ] && return 0; done
  die 2 "$what needs Java $(echo "$@" | sed 's/ / or /g'), but $JAVA is Java ${m:-?}; $JDK_HINT"
}
need_kafka_java()     { case "$KAFKA_VERSION" in 3.*) need_java "Kafka $KAFKA_VERSION" 11 17 ;; *) need_java "Kafka $KAFKA_VERSION" 17 ;; esac; }
need_cassandra_java() { need_java "Cassandra $CASSANDRA_VERSION" 11 17; }

# --- fetched jars ----------------------------------------------------------------------------
# fetch.sh writes <lib>/.fetched ("<artifact> <version>") only after a complete, checked download.
marker_line() { case "$1" in kafka) echo "kafka_2.13 $KAFKA_VERSION" ;; cassandra) echo "cassandra-all $CASSANDRA_VERSION" ;; esac; }
lib_dir()     { case "$1" in kafka) echo "$KAFKA_LIB" ;; cassandra) echo "$CASSANDRA_LIB" ;; esac; }
lib_ok()      { [ "$(cat "$(lib_dir "$1")/.fetched" 2>/dev/null)" = "$(marker_line "$1")" ]; }

# --- ports and processes ---------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -n1; }

# require_free <what> <port>...: a clear error if a port is taken by something that is not ours
require_free() { local what="$1" p; shift; for p in "$@"; do
  port_open "$p" && die 1 "port $p (127.0.0.1) is in use by another process ($(port_owner "$p" || true)), not by" \
    "the $what of INFRA_HOME=$INFRA_HOME; stop that process or choose other ports (see docs/infra.md)"
done; return 0; }

# our_pid <pidfile> <cmdline-substring>: print the pid if it is alive AND its command line contains
# the substring (main class / conf path of this INFRA_HOME), so a recycled pid is never "ours".
our_pid() {
  local pid; pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  echo "$pid"
}

# rotate <file>...: keep the previous run's log as <file>.1, so every run starts a fresh log
rotate() { local f; for f in "$@"; do [ -f "$f" ] && mv -f "$f" "$f.1"; done; return 0; }

# wait_ready <name> <pid> <port> <log> <pattern> <timeout-s>: port open + the server's own "started"
# line in its (freshly rotated) log. On death or timeout: print the log tail and return 1.
wait_ready() {
  local name="$1" pid="$2" port="$3" log="$4" pat="$5" t="$6" t0="$SECONDS"
  while ((SECONDS - t0 < t)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name (pid $pid) exited during startup; last lines of $log and stdout.log:" >&2
      tail -n 40 "$log" "$(dirname "$log")/stdout.log" >&2 2>/dev/null || true; return 1
    fi
    if port_open "$port" && grep -q "$pat" "$log" 2>/dev/null; then
      echo "$name ready after $((SECONDS - t0))s (pid $pid, port $port)"; return 0
    fi
    sleep 1
  done
  echo "$name not ready after ${t}s (raise ${name^^}_START_TIMEOUT?); last lines of $log:" >&2
  tail -n 40 "$log" "$(dirname "$log")/stdout.log" >&2 2>/dev/null || true; return 1
}

# stop_pid <name> <pidfile> <cmdline-substring> [grace-s]: SIGTERM (both servers have a graceful
# shutdown hook), SIGKILL after the grace period. A stale pid file is just removed.
stop_pid() {
  local name="$1" f="$2" grace="${4:-60}" pid t0="$SECONDS"
  if pid="$(our_pid "$f" "$3")"; then
    echo "stopping $name (pid $pid)"
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null && ((SECONDS - t0 < grace)); do sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name pid $pid ignored SIGTERM for ${grace}s, killing" >&2; kill -KILL "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 1; done
    fi
    echo "$name stopped after $((SECONDS - t0))s"
  else
    echo "$name not running"
  fi
  rm -f "$f"
}
