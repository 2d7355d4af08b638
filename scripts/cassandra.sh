#!/usr/bin/env bash
# One Apache Cassandra 5.0 node on 127.0.0.1, run from the Maven Central jars
# (org.apache.cassandra:cassandra-all and its runtime dependencies) on Java 17.
# No tarball, no Docker. scripts/services drives it; it also works on its own:
#
#   cassandra.sh WORKDIR start|stop|status|fetch
#   cassandra.sh WORKDIR cql 'STATEMENT'
#
# start:  fetch the jars into the cache (once) -> write WORKDIR/conf -> launch
#         CassandraDaemon detached -> wait for a CQL OPTIONS answer -> run a real query
#         (SELECT release_version FROM system.local) -> print the pid. A no-op when running.
# stop:   SIGTERM (the drain shutdown hook runs), SIGKILL after 60 s.
# status: print the pid and exit 0 when running, else exit 1.
# fetch:  only resolve the jars (mvn dependency:copy-dependencies) into the cache.
# cql:    run one statement over the native protocol (v4) from bash; prints the printable
#         strings of the result. Enough for health checks and CREATE KEYSPACE; not a cqlsh.
#
# Environment knobs (all optional):
#   CASSANDRA_VERSIONS    versions of cassandra-all to try, in order (default "5.0.8 5.0.7 5.0.6")
#   CASSANDRA_JAVA        a Java 17 'java' (default: the first Java 17 found; never Java 24+)
#   CASSANDRA_HEAP        -Xmx and -Xms (default 1G)
#   CASSANDRA_NATIVE_PORT (9042)   CASSANDRA_STORAGE_PORT (7000)
#   CASSANDRA_HOST        the node's address, listen and rpc (default 127.0.0.1; another loopback
#                         address such as 127.0.0.2 gives a second node on the same ports)
#   CASSANDRA_SEEDS       "host:storage_port,..." (default: this node alone)
#   CASSANDRA_INITIAL_TOKEN  the node's one token (default 0); each node of a cluster needs its own
#   CASSANDRA_AUTO_BOOTSTRAP  false (default) = join without streaming: right for a fresh cluster
#                         whose nodes all start empty, one after another
#   CASSANDRA_CLUSTER_NAME (persistio)
#   CASSANDRA_JMX_PORT    empty = no JMX (default); e.g. 7199 for local-only JMX
#   CASSANDRA_START_TIMEOUT seconds to wait for CQL (default 180)
#   CASSANDRA_FAST        1 (default) = test-only speedups: no fsync, unsafe system tables
#   CASSANDRA_UNSAFE_SYSTEM  (= CASSANDRA_FAST) 1 = system tables (the schema too) skip the commit
#                         log: a node SIGKILLed forgets recent schema changes and serves requests
#                         for keyspaces it no longer knows until it pulls the schema again; the
#                         cluster sets 0, as its nodes are killed on purpose
#   CASSANDRA_CLEAN       1 (default) = wipe WORKDIR/data before each start (hermetic)
#   CASSANDRA_LIB         the jar cache (default ~/.cache/persistio/cassandra/lib), outside
#                         WORKDIR so that fresh clones reuse it
#   CASSANDRA_EXTRA_JVM_OPTS  appended verbatim to the java command line
#   CASSANDRA_MVN_EXCLUSIONS  "group:artifact ..." excluded under cassandra-all, for a mirror
#                         that lacks some artifact
set -euo pipefail

WORK=${1:?usage: $0 WORKDIR start|stop|status|fetch|cql STATEMENT}
CMD=${2:-start}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
case "$WORK" in *[[:space:]]*) echo "WORKDIR must not contain whitespace" >&2; exit 1;; esac

VERSIONS=${CASSANDRA_VERSIONS:-"5.0.8 5.0.7 5.0.6"}
HEAP=${CASSANDRA_HEAP:-1G}
HOST=${CASSANDRA_HOST:-127.0.0.1}
NATIVE_PORT=${CASSANDRA_NATIVE_PORT:-9042}
STORAGE_PORT=${CASSANDRA_STORAGE_PORT:-7000}
JMX_PORT=${CASSANDRA_JMX_PORT:-}
START_TIMEOUT=${CASSANDRA_START_TIMEOUT:-180}
FAST=${CASSANDRA_FAST:-1}
UNSAFE_SYSTEM=${CASSANDRA_UNSAFE_SYSTEM:-$FAST}
CLEAN=${CASSANDRA_CLEAN:-1}
SEEDS=${CASSANDRA_SEEDS:-$HOST:$STORAGE_PORT}
INITIAL_TOKEN=${CASSANDRA_INITIAL_TOKEN:-0}
AUTO_BOOTSTRAP=${CASSANDRA_AUTO_BOOTSTRAP:-false}
CLUSTER_NAME=${CASSANDRA_CLUSTER_NAME:-persistio}

LIB=${CASSANDRA_LIB:-$HOME/.cache/persistio/cassandra/lib}
CONF=$WORK/conf
DATA=$WORK/data
LOGS=$WORK/logs
PIDFILE=$WORK/cassandra.pid

log() { echo "[cassandra] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- java 17 ----
# Cassandra 5.0 runs on Java 11 or 17 only. Java >= 24 can never work:
# CassandraDaemon.setup() installs a SecurityManager, which throws there.
find_java17() {
  local c v
  for c in "${CASSANDRA_JAVA:-}" /usr/lib/jvm/java-17-openjdk-*/bin/java "$(command -v java 2>/dev/null || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    v=$("$c" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
    if [ "${v%%.*}" = "17" ]; then echo "$c"; return 0; fi
  done
  return 1
}

need_java17() {
  JAVA=$(find_java17) || die "Cassandra 5.0 needs Java 17 and none was found (Java 24+ cannot run it).
  Install it with: apt-get install -y openjdk-17-jre-headless
  or point CASSANDRA_JAVA at a Java 17 'java' binary."
}

# ------------------------------------------------------ native protocol ----
# Frames of the CQL native protocol v4 (doc/native_protocol_v4.spec): a 9-byte header
# (version, flags, stream:2, opcode, length:4) and a body. Requests are version 0x04,
# responses 0x84. Opcodes: ERROR 00, STARTUP 01, READY 02, OPTIONS 05, SUPPORTED 06,
# QUERY 07, RESULT 08.
be16() { printf '\\x%02x\\x%02x' $(( ($1 >> 8) & 255 )) $(( $1 & 255 )); }
be32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' \
  $(( ($1 >> 24) & 255 )) $(( ($1 >> 16) & 255 )) $(( ($1 >> 8) & 255 )) $(( $1 & 255 )); }

send_frame() {  # send_frame STREAM OPCODE BODYFILE  (to fd 3)
  printf '%b' "\\x04\\x00$(be16 "$1")$(printf '\\x%02x' "$2")$(be32 "$(wc -c <"$3")")" >&3
  cat "$3" >&3
}

read_frame() {  # read_frame BODYFILE -> prints the response opcode (hex) from fd 3
  local hdr
  hdr=$(timeout 10 head -c 9 <&3 | od -An -tx1 -v | tr -d ' \n')
  [ "${#hdr}" = 18 ] && [ "${hdr:0:2}" = 84 ] || return 1
  timeout 10 head -c $(( 16#${hdr:10:8} )) <&3 >"$1"
  echo "${hdr:8:2}"
}

cql_ping() {  # OPTIONS -> SUPPORTED
  local tmp rc=0
  tmp=$(mktemp -d)
  (
    exec 2>/dev/null
    exec 3<>"/dev/tcp/$HOST/$NATIVE_PORT" || exit 1
    : >"$tmp/empty"
    send_frame 0 5 "$tmp/empty"
    [ "$(read_frame "$tmp/body")" = 06 ]
  ) || rc=1
  rm -rf "$tmp"
  return $rc
}

cql_query() {  # cql_query STATEMENT -> printable strings of the RESULT body, or the error
  local tmp rc=0
  tmp=$(mktemp -d)
  (
    { exec 3<>"/dev/tcp/$HOST/$NATIVE_PORT"; } 2>/dev/null || { echo "nothing answers on $HOST:$NATIVE_PORT" >&2; exit 1; }
    # STARTUP {"CQL_VERSION": "3.0.0"}
    { printf '%b' "$(be16 1)$(be16 11)"; printf 'CQL_VERSION'; printf '%b' "$(be16 5)"; printf '3.0.0'; } >"$tmp/startup"
    send_frame 1 1 "$tmp/startup"
    op=$(read_frame "$tmp/ready") || op=none
    [ "$op" = 02 ] || { echo "no READY after STARTUP (opcode $op)" >&2; exit 1; }
    # QUERY: [long string] statement, [short] consistency ONE, [byte] no flags
    printf '%s' "$1" >"$tmp/statement"
    { printf '%b' "$(be32 "$(wc -c <"$tmp/statement")")"; cat "$tmp/statement"; printf '%b' "$(be16 1)\\x00"; } >"$tmp/query"
    send_frame 2 7 "$tmp/query"
    op=$(read_frame "$tmp/result") || op=none
    case $op in
      08) tr -c '[:print:]' '\n' <"$tmp/result" | grep -v '^$' || true ;;
      00) echo "CQL error: $(tail -c +7 "$tmp/result" | tr -c '[:print:]' ' ')" >&2; exit 1 ;;
      *) echo "unexpected response (opcode $op)" >&2; exit 1 ;;
    esac
  ) || rc=$?
  rm -rf "$tmp"
  return $rc
}

# A pid file is trusted only while its process is still our CassandraDaemon (pids get reused).
running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null \
    | grep -q -- "CassandraDaemon" || return 1
  grep -qF -- "$WORK/conf" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# ------------------------------------------------------------------ jars ----
write_pom() {
  local excl="" ga
  for ga in ${CASSANDRA_MVN_EXCLUSIONS:-}; do
    excl+="<exclusion><groupId>${ga%%:*}</groupId><artifactId>${ga#*:}</artifactId></exclusion>"
  done
  [ -n "$excl" ] && excl="<exclusions>$excl</exclusions>"
  cat >"$WORK/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.persistio</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$1</version>
      $excl
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <!-- pinned: Maven 3.8's super-POM default for this plugin is the 2013-era 2.8 -->
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
}

verify_lib() {  # verify_lib DIR
  local p
  for p in 'cassandra-all-*.jar' 'jna-[0-9]*.jar' 'jamm-*.jar' 'logback-classic-*.jar' \
           'guava-*.jar' 'snakeyaml-*.jar' 'sigar-*.jar' 'caffeine-*.jar' 'netty-*.jar' \
           'chronicle-queue-*.jar' 'antlr-runtime-*.jar'; do
    compgen -G "$1/$p" >/dev/null || { log "missing $p in $1"; return 1; }
  done
}

cached() { [ -f "$LIB/.complete" ] && verify_lib "$LIB" 2>/dev/null; }

# Resolves into a temporary folder and renames it into place, under a lock, so that
# two checkouts starting at once neither download twice nor see a half-filled cache.
fetch_jars() {
  cached && return 0
  mkdir -p "$(dirname "$LIB")" "$LOGS"
  exec 8>"$LIB.lock"
  flock 8
  if cached; then exec 8>&-; return 0; fi
  command -v mvn >/dev/null || die "the Cassandra jars are not cached yet and mvn is missing: apt-get install -y maven"
  local ver tmp="$LIB.tmp.$$" java_home
  java_home=$(dirname "$(dirname "$(readlink -f "$JAVA")")")
  for ver in $VERSIONS; do
    rm -rf "$tmp"; mkdir -p "$tmp"
    write_pom "$ver"
    log "resolving org.apache.cassandra:cassandra-all:$ver from Maven (log: $LOGS/mvn-$ver.log)"
    # includeScope=runtime = compile + runtime scopes
    if JAVA_HOME="$java_home" mvn -B -f "$WORK/pom.xml" \
         dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
         >"$LOGS/mvn-$ver.log" 2>&1 && verify_lib "$tmp"; then
      echo "$ver" >"$tmp/.complete"
      rm -rf "$LIB"; mv "$tmp" "$LIB"
      log "cached $(compgen -G "$LIB/*.jar" | wc -l) jars for cassandra-all $ver in $LIB"
      exec 8>&-
      return 0
    fi
    log "cassandra-all $ver could not be resolved completely:"
    grep -E 'ERROR|Could not|not find|invalid' "$LOGS/mvn-$ver.log" | tail -n 8 >&2 || true
  done
  rm -rf "$tmp"
  die "no cassandra-all version in '$VERSIONS' resolved"
}

# ----------------------------------------------------------------- conf ----
write_conf() {
  mkdir -p "$CONF/triggers"
  # One node, alone or in a cluster (CASSANDRA_SEEDS). Every key exists in 5.0's Config.java and
  # unknown keys are rejected, so no 3.x/4.0 names (*_in_ms, start_rpc ...).
  cat >"$CONF/cassandra.yaml" <<EOF
cluster_name: '$CLUSTER_NAME'
# one token per node: nothing to allocate, fewer ranges to scan (a cluster gives each its own)
num_tokens: 1
initial_token: '$INITIAL_TOKEN'
auto_bootstrap: $AUTO_BOOTSTRAP
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$SEEDS"
listen_address: $HOST
storage_port: $STORAGE_PORT
rpc_address: $HOST
start_native_transport: true
native_transport_port: $NATIVE_PORT
data_file_directories:
  - "$DATA/data"
commitlog_directory: "$DATA/commitlog"
saved_caches_directory: "$DATA/saved_caches"
hints_directory: "$DATA/hints"
cdc_raw_directory: "$DATA/cdc_raw"
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_disk_access_mode: legacy
memtable_allocation_type: heap_buffers
disk_failure_policy: stop
commit_failure_policy: stop
# tests drop and truncate a lot: no snapshot for each
auto_snapshot: false
EOF

  # INFO to system.log, WARN+ to stdout.log
  cat >"$CONF/logback.xml" <<'EOF'
<configuration>
  <appender name="SYSTEMLOG" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter"><level>WARN</level></filter>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="SYSTEMLOG" />
    <appender-ref ref="STDOUT" />
  </root>
</configuration>
EOF
}

# ------------------------------------------------------------ jvm flags ----
# What bin/cassandra, cassandra-env.sh, jvm-server.options and jvm17-server.options
# of the 5.0 tarball would pass.
build_jvm_opts() {
  JVM_OPTS=(
    "-Xms$HEAP" "-Xmx$HEAP"
    -ea -da:net.openhft...
    -XX:+UseThreadPriorities -Xss256k -XX:+UseTLAB -XX:+ResizeTLAB -XX:+PerfDisableSharedMem
    -Djava.net.preferIPv4Stack=true
    -Dchronicle.analytics.disable=true
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
    # JPMS: all required on 17
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
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
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    # StartupChecks warns unless one of these is set
    -XX:+ExitOnOutOfMemoryError
    "-Dlogback.configurationFile=$CONF/logback.xml"
    "-Dcassandra.logdir=$LOGS"
    "-Dcassandra.storagedir=$DATA"
    -Dcassandra-foreground=yes
    "-Dcassandra.config=file://$CONF/cassandra.yaml"
    "-Dcassandra.triggers_dir=$CONF/triggers"
    -Dcassandra.libjemalloc=-
    # a single seed: no waiting for gossip to settle
    -Dcassandra.skip_wait_for_gossip_to_settle=0
  )
  # bin/cassandra.in.sh (CASSANDRA-19001): only on a JDK (javac present)
  if [ -x "$(dirname "$(readlink -f "$JAVA")")/javac" ]; then
    JVM_OPTS+=(--add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
               --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
               --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED)
  fi
  local jamm
  jamm=$(compgen -G "$LIB/jamm-*.jar" | head -n 1 || true)
  [ -n "$jamm" ] && JVM_OPTS+=("-javaagent:$jamm")
  if [ -n "$JMX_PORT" ]; then
    JVM_OPTS+=("-Dcassandra.jmx.local.port=$JMX_PORT" -Dcom.sun.management.jmxremote.authenticate=false)
  fi
  if [ "$FAST" = "1" ]; then
    JVM_OPTS+=(-Dcassandra.skip_sync=true -Dcassandra.shutdown_announce_in_ms=0)
  fi
  [ "$UNSAFE_SYSTEM" = "1" ] && JVM_OPTS+=(-Dcassandra.unsafesystem=true)
  # shellcheck disable=SC2206
  [ -n "${CASSANDRA_EXTRA_JVM_OPTS:-}" ] && JVM_OPTS+=($CASSANDRA_EXTRA_JVM_OPTS)
  return 0
}

# ---------------------------------------------------------------- start ----
fail_start() {  # fail_start PID WHY
  log "$2; tail of $LOGS/system.log and $LOGS/stdout.log:"
  tail -n 40 "$LOGS/system.log" >&2 2>/dev/null || true
  tail -n 20 "$LOGS/stdout.log" >&2 2>/dev/null || true
  kill -9 "$1" 2>/dev/null || true
  rm -f "$PIDFILE"
  exit 1
}

do_start() {
  local pid t0 version
  mkdir -p "$LOGS"
  if pid=$(running_pid); then
    log "already running (pid $pid)"
    cql_query "SELECT release_version FROM system.local" >/dev/null || die "pid $pid does not answer CQL"
    echo "$pid"; return 0
  fi
  need_java17
  fetch_jars
  write_conf
  [ "$CLEAN" = "1" ] && rm -rf "$DATA"
  mkdir -p "$DATA"
  if cql_ping; then die "something else already answers CQL on $HOST:$NATIVE_PORT"; fi

  build_jvm_opts
  export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-4}   # as cassandra-env.sh does
  printf '%q ' "$JAVA" "${JVM_OPTS[@]}" -cp "$CONF:$LIB/*" org.apache.cassandra.service.CassandraDaemon \
    >"$WORK/java-command.txt"
  # setsid: its own session, so it outlives the shell, make or CI step that started it;
  # cwd WORKDIR, so that `ss -ltnp` + /proc/PID/cwd tell whose node holds a port
  cd "$WORK"
  setsid "$JAVA" "${JVM_OPTS[@]}" -cp "$CONF:$LIB/*" org.apache.cassandra.service.CassandraDaemon \
    >"$LOGS/stdout.log" 2>&1 </dev/null &
  pid=$!
  t0=$SECONDS
  echo "$pid" >"$PIDFILE"
  log "started pid $pid (heap $HEAP); waiting up to ${START_TIMEOUT}s for CQL on $HOST:$NATIVE_PORT"
  until cql_ping; do
    kill -0 "$pid" 2>/dev/null || fail_start "$pid" "Cassandra exited during startup"
    (( SECONDS - t0 < START_TIMEOUT )) || fail_start "$pid" "no CQL answer after ${START_TIMEOUT}s"
    sleep 1
  done
  version=$(cql_query "SELECT release_version FROM system.local" | grep -Eo '^[0-9]+\.[0-9]+\.[0-9]+' | head -n 1) \
    || fail_start "$pid" "CQL answers OPTIONS but not a query"
  log "Cassandra $version answers CQL after $((SECONDS - t0))s"
  echo "$pid"
}

# ----------------------------------------------------------------- stop ----
do_stop() {
  local pid _
  if ! pid=$(running_pid); then log "not running"; rm -f "$PIDFILE"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then log "no exit after 60s, SIGKILL"; kill -KILL "$pid" || true; fi
  rm -f "$PIDFILE"
  log "stopped pid $pid"
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  status) running_pid ;;
  fetch) need_java17; fetch_jars ;;
  cql) cql_query "${3:?usage: $0 WORKDIR cql STATEMENT}" ;;
  *) die "unknown command '$CMD' (start|stop|status|fetch|cql)" ;;
esac
