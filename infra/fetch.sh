#!/usr/bin/env bash
# Resolve the Kafka broker and the Cassandra daemon from Maven Central into
#   $INFRA_LIB_HOME/kafka/lib  and  $INFRA_LIB_HOME/cassandra/lib      (INFRA_LIB_HOME defaults to INFRA_HOME)
# Usage: infra/fetch.sh [all|kafka|cassandra] [--if-needed]
#   --if-needed: skip a component whose lib/.fetched marker matches the requested version.
# Needs only `mvn` (3.8.x is fine) and Maven Central; ~/.m2 is the cache (MVN_ARGS=-o for offline).
# Downloads go to lib.tmp and replace lib/ only once complete and checked, then lib/.fetched is written.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WHAT=all; IF_NEEDED=0
for a in "$@"; do case "$a" in
  all|kafka|cassandra) WHAT="$a" ;; --if-needed) IF_NEEDED=1 ;;
  *) die 64 "usage: $0 [all|kafka|cassandra] [--if-needed]" ;; esac; done
DEP="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"   # pinned; Maven 3.8's default is 2.8

ver_of() {     # <lib-dir> <artifactId> -> version of <artifactId>-<version>.jar (empty if absent)
  ls "$1" | sed -n "s/^$2-\([0-9][0-9A-Za-z.-]*\)\.jar\$/\1/p" | awk 'NR==1'
}
mvn_() { "${MVN:-mvn}" -B -q -Dstyle.color=never ${MVN_ARGS:-} "$@"; }
copy_deps() {  # <pom-dir> <lib-dir> [-Dprop=value ...]
  local pomdir="$1" lib="$2"; shift 2
  mvn_ -f "$pomdir/pom.xml" "$DEP:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$lib" "$@"
}
copy_one() {   # <pom-dir> <lib-dir> <groupId:artifactId:version>
  mvn_ -f "$1/pom.xml" "$DEP:copy" -Dartifact="$3" -DoutputDirectory="$2"
}

fetch_kafka() {  # <lib-dir>
  local KLIB="$1" SLF4J L4J B
  copy_deps "$HERE/kafka" "$KLIB" -Dkafka.version="$KAFKA_VERSION" || return 1
  SLF4J="$(ver_of "$KLIB" slf4j-api)"
  if [ "${KAFKA_VERSION%%.*}" -ge 4 ]; then
    # 4.x logs through log4j2. The published POM has (at least in early 4.x) carried
    # log4j-api/-core/-slf4j-impl as runtime deps, but upstream discussed making them optional:
    # add whatever is missing, at the log4j-api version Kafka itself resolved.
    L4J="$(ver_of "$KLIB" log4j-api)"; L4J="${L4J:-${LOG4J2_VERSION:-2.24.3}}"
    [ -n "$(ver_of "$KLIB" log4j-api)" ]  || copy_one "$HERE/kafka" "$KLIB" "org.apache.logging.log4j:log4j-api:$L4J"
    [ -n "$(ver_of "$KLIB" log4j-core)" ] || copy_one "$HERE/kafka" "$KLIB" "org.apache.logging.log4j:log4j-core:$L4J"
    if ! ls "$KLIB" | grep -Eq '^log4j-slf4j2?-impl-'; then
      case "$SLF4J" in 1.*) B=log4j-slf4j-impl ;; *) B=log4j-slf4j2-impl ;; esac
      copy_one "$HERE/kafka" "$KLIB" "org.apache.logging.log4j:$B:$L4J"
    fi
  else
    # 3.x: reload4j is `compileOnly` in Kafka's core build, so it is NOT in the POM. Same jars as the tarball.
    [ -n "$(ver_of "$KLIB" reload4j)" ]       || copy_one "$HERE/kafka" "$KLIB" "ch.qos.reload4j:reload4j:1.2.25"
    [ -n "$(ver_of "$KLIB" slf4j-reload4j)" ] || copy_one "$HERE/kafka" "$KLIB" "org.slf4j:slf4j-reload4j:${SLF4J:-1.7.36}"
  fi
}
check_kafka() {  # <lib-dir>: the broker at the requested version + exactly one SLF4J binding
  local KLIB="$1" a n
  for a in kafka_2.13 kafka-clients kafka-metadata kafka-raft kafka-storage; do
    [ "$(ver_of "$KLIB" "$a")" = "$KAFKA_VERSION" ] || { echo "fetch: $a-$KAFKA_VERSION.jar missing from $KLIB" >&2; return 1; }
  done
  n=$(ls "$KLIB" | grep -Ec '^(slf4j-reload4j|slf4j-log4j12|log4j-slf4j2?-impl|logback-classic|slf4j-simple)-[0-9]' || true)
  [ "$n" -eq 1 ] || { echo "fetch: $n SLF4J bindings in $KLIB (expected 1)" >&2; return 1; }
}

fetch_cassandra() { copy_deps "$HERE/cassandra" "$1" -Dcassandra.version="$CASSANDRA_VERSION"; }
check_cassandra() {  # <lib-dir>: if Maven ever judged cassandra-all's POM invalid it would silently drop ALL transitive deps
  local CLIB="$1" a n
  [ "$(ver_of "$CLIB" cassandra-all)" = "$CASSANDRA_VERSION" ] || { echo "fetch: cassandra-all-$CASSANDRA_VERSION.jar missing from $CLIB" >&2; return 1; }
  for a in jamm jna logback-classic netty-all snakeyaml guava; do
    [ -n "$(ver_of "$CLIB" "$a")" ] || { echo "fetch: $a missing from $CLIB (transitive resolution failed?)" >&2; return 1; }
  done
  n=$(ls "$CLIB" | wc -l)
  [ "$n" -ge 60 ] || { echo "fetch: only $n jars in $CLIB - incomplete" >&2; return 1; }
}

one() {  # <kafka|cassandra>
  local c="$1" lib tmp; lib="$(lib_dir "$c")"; tmp="$lib.tmp"
  if [ "$IF_NEEDED" = 1 ]; then
    if lib_ok "$c"; then echo "fetch: $c: $lib is up to date ($(marker_line "$c"))"; return 0; fi
    # lib/ from before markers existed: adopt it if it passes the same checks as a fresh download
    if [ -d "$lib" ] && [ ! -e "$lib/.fetched" ] && "check_$c" "$lib" 2>/dev/null \
       && [ -z "$(find "$lib" -name '*.jar' -size 0)" ]; then
      marker_line "$c" >"$lib/.fetched"; echo "fetch: $c: adopted existing $lib ($(marker_line "$c"))"; return 0
    fi
  fi
  command -v "${MVN:-mvn}" >/dev/null || die 2 "mvn not found (needed to download jars into $lib); install Maven: apt-get install maven"
  echo "fetch: $c $(marker_line "$c" | cut -d' ' -f2) -> $lib"
  rm -rf "$tmp"; mkdir -p "$tmp"
  "fetch_$c" "$tmp" && "check_$c" "$tmp" \
    || { rm -rf "$tmp"; die 1 "fetch: $c: download failed or incomplete (mvn errors above; offline?); $lib left unchanged"; }
  marker_line "$c" >"$tmp/.fetched"
  rm -rf "$lib.old"; [ ! -d "$lib" ] || mv "$lib" "$lib.old"; mv "$tmp" "$lib"; rm -rf "$lib.old"
  echo "fetch: $c: $(ls "$lib" | wc -l) jars"
}

if [ "$WHAT" = all ] || [ "$WHAT" = kafka ];     then one kafka; fi
if [ "$WHAT" = all ] || [ "$WHAT" = cassandra ]; then one cassandra; fi
