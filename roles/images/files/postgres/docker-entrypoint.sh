#!/usr/bin/env bash
# Entrypoint of the CleanMateX PostgreSQL image (cleanmatex.infra images role).
# Written for this project; it implements the documented contract of the official postgres image:
#
#   POSTGRES_PASSWORD, POSTGRES_USER (default postgres), POSTGRES_DB (default: the user) and
#   their *_FILE variants (read as root, so secrets that only root can read work too),
#   POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD (default
#   scram-sha-256), PGDATA (default /var/lib/postgresql/data);
#   /docker-entrypoint-initdb.d/*.sh, *.sql and *.sql.gz run once, in name order, when the data
#   directory is empty. Executable *.sh files are run, the others are sourced.
#   `postgres -c key=value ...` arguments are passed to the server; other commands run as is.
#
# What it adds:
#   - the init scripts run against a temporary server that listens on no TCP socket (only the
#     Unix socket), so TCP health checks (pg_isready -h 127.0.0.1) fail until init is done;
#   - psql runs with ON_ERROR_STOP; a failing script stops the container with a non-zero status
#     and leaves $PGDATA/cmx-initdb-incomplete behind: the next start refuses to run on a
#     half-initialised data directory instead of coming up "healthy";
#   - $PGDATA/cmx-initdb-complete is written at the very end of the first initialisation, and a
#     start on an existing data directory requires it: a kill, OOM or reboot during initdb (before
#     the incomplete marker exists) is refused too. Data directories initialised before the
#     sentinel existed are recognised by the configuration this entrypoint wrote after initdb
#     (with no incomplete marker left, their initialisation finished) and get the sentinel;
#   - init scripts with Windows (CRLF) line endings are rejected before anything is written;
#   - pg_hba.conf: local connections trust, TCP connections POSTGRES_HOST_AUTH_METHOD;
#     password_encryption = scram-sha-256; listen_addresses = '*' for the real server.
#   - with POSTGRES_INITDB_WALDIR (the stack: a folder on its own volume), a cluster initialised
#     without it (pg_wal a plain folder inside $PGDATA) gets its WAL moved there once, before the
#     server starts: copied to a temporary folder, synced, renamed into place, then pg_wal becomes a
#     symbolic link to it (move_wal_out below: a start interrupted at any step resumes or redoes
#     it, and $PGDATA/pg_wal stays the one valid copy until the link exists);
#   - a new cluster whose WAL folder already holds files (the WAL volume of a removed data volume)
#     is refused: initdb would fail on it anyway, and the files belong to no cluster left.
set -Eeuo pipefail
shopt -s nullglob

readonly INITDB_D=/docker-entrypoint-initdb.d
readonly MARKER_NAME=cmx-initdb-incomplete
readonly SENTINEL_NAME=cmx-initdb-complete
# Written by initialise() into pg_hba.conf / postgresql.conf right after the incomplete marker.
readonly HBA_HEADER='# Written by the CleanMateX entrypoint at initialisation.'
readonly CONF_HEADER='# Added by the CleanMateX entrypoint at initialisation.'

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# load_var NAME [DEFAULT]: NAME from the environment or from the file named by NAME_FILE.
load_var() {
    local name=$1 default=${2-}
    local file_var="${name}_FILE"
    local value=${!name-} file=${!file_var-}
    if [[ -n $value && -n $file ]]; then
        die "both $name and $file_var are set; set only one of them"
    fi
    if [[ -n $file ]]; then
        [[ -r $file ]] || die "$file_var=$file: file not found or not readable"
        value=$(<"$file")
    fi
    [[ -n $value ]] || value=$default
    export "$name=$value"
    unset "$file_var"
}

load_environment() {
    load_var POSTGRES_PASSWORD
    load_var POSTGRES_USER postgres
    load_var POSTGRES_DB "$POSTGRES_USER"
    load_var POSTGRES_INITDB_ARGS
    : "${POSTGRES_INITDB_WALDIR:=}"
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
    : "${PGDATA:=/var/lib/postgresql/data}"
    export POSTGRES_INITDB_WALDIR POSTGRES_HOST_AUTH_METHOD PGDATA
}

# Arguments that only print something: no initialisation for them.
wants_help() {
    local arg
    for arg; do
        case $arg in
            -'?' | --help | --describe-config | -V | --version | -C) return 0 ;;
        esac
    done
    return 1
}

# As root: data directory ownership, then the same script again as the postgres user.
drop_privileges() {
    mkdir -p "$PGDATA"
    if [[ $(stat -c %U "$PGDATA") != postgres ]]; then
        log "giving $PGDATA to the postgres user"
        chown -R postgres:postgres "$PGDATA"
    fi
    chmod 0700 "$PGDATA"
    if [[ -n $POSTGRES_INITDB_WALDIR ]]; then
        mkdir -p "$POSTGRES_INITDB_WALDIR"
        chown -R postgres:postgres "$POSTGRES_INITDB_WALDIR"
        chmod 0700 "$POSTGRES_INITDB_WALDIR"
    fi
    mkdir -p /var/run/postgresql
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    export HOME=/var/lib/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
}

check_init_scripts() {
    local f carriage_returns
    for f in "$INITDB_D"/*; do
        case $f in
            *.sh | *.sql) carriage_returns=$(tr -cd '\r' <"$f" | wc -c) ;;
            *.sql.gz)
                gzip -t "$f" 2>/dev/null || die "$f is not a valid gzip file"
                carriage_returns=$(gzip -dc "$f" | tr -cd '\r' | wc -c)
                ;;
            *) continue ;;
        esac
        if ((carriage_returns > 0)); then
            die "$f has Windows (CRLF) line endings; convert it to Unix line endings (dos2unix, or git config core.autocrlf input) and start again. Nothing was written to $PGDATA"
        fi
    done
}

psql_init() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

temp_server_start() {
    # listen_addresses='' : Unix socket only while the init scripts run.
    local -a options=("$@" -c listen_addresses= -p "${PGPORT:-5432}")
    pg_ctl -D "$PGDATA" -w -t 120 -o "$(printf '%q ' "${options[@]}")" start
}

temp_server_stop() {
    pg_ctl -D "$PGDATA" -m fast -w -t 120 stop
}

on_init_exit() {
    local rc=$?
    if ((rc != 0)); then
        log "ERROR: initialisation of $PGDATA failed (exit status $rc)"
        if [[ -f $PGDATA/postmaster.pid ]]; then
            pg_ctl -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
        fi
        if [[ -e $PGDATA/$MARKER_NAME ]]; then
            log "ERROR: $PGDATA is left marked incomplete ($MARKER_NAME); fix the init script, then $(remove_volume_hint)"
        fi
    fi
}

run_init_script() {
    local f=$1
    case $f in
        *.sh)
            if [[ -x $f ]]; then
                log "running $f"
                "$f"
            else
                log "sourcing $f"
                # shellcheck disable=SC1090
                . "$f"
            fi
            ;;
        *.sql)
            log "running $f"
            psql_init --dbname "$POSTGRES_DB" -f "$f"
            ;;
        *.sql.gz)
            log "running $f"
            gzip -dc "$f" | psql_init --dbname "$POSTGRES_DB"
            ;;
        *) log "ignoring $f (not *.sh, *.sql or *.sql.gz)" ;;
    esac
}

# The named volume holding $PGDATA (from the mount table: .../volumes/<name>/_data), if any.
data_volume() { volume_of "$PGDATA"; }

# The named volume holding the folder $1, if any.
volume_of() {
    local path=$1 best='' best_len=0 root mount_point
    while read -r _ _ _ root mount_point _; do
        if [[ $path == "$mount_point" || $path == "$mount_point"/* ]] && ((${#mount_point} > best_len)); then
            best=$root best_len=${#mount_point}
        fi
    done </proc/self/mountinfo
    if [[ $best =~ /volumes/([^/]+)/_data$ ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
    fi
}

remove_volume_hint() {
    local volume wal_volume=''
    volume=$(data_volume 2>/dev/null || true)
    [[ -z $POSTGRES_INITDB_WALDIR ]] || wal_volume=$(volume_of "$POSTGRES_INITDB_WALDIR" 2>/dev/null || true)
    if [[ -n $volume && -n $wal_volume ]]; then
        printf 'remove the data volume %s and the WAL volume %s (docker volume rm %s %s once its container is removed; or the whole stack: bin/cmx down -e cmx_down_remove_volumes=true, which also deletes the Redis and storage volumes) and start again' "$volume" "$wal_volume" "$volume" "$wal_volume"
    elif [[ -n $volume ]]; then
        printf 'remove the data volume %s (docker volume rm %s once its container is removed; or the whole stack: bin/cmx down -e cmx_down_remove_volumes=true, which also deletes the Redis and storage volumes) and start again' "$volume" "$volume"
    else
        printf 'empty the data directory %s or remove its volume (the whole stack: bin/cmx down -e cmx_down_remove_volumes=true, which also deletes the Redis and storage volumes) and start again' "$PGDATA"
    fi
}

# Last step of the first initialisation: from now on the data directory may be started.
write_sentinel() {
    local tmp=$PGDATA/$SENTINEL_NAME.tmp
    printf 'first initialisation of %s completed %s\n' "$PGDATA" "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" >"$tmp"
    sync "$tmp" 2>/dev/null || true
    mv -f "$tmp" "$PGDATA/$SENTINEL_NAME"
    sync "$PGDATA" 2>/dev/null || true
}

# A data directory initialised by this entrypoint before the sentinel existed: it wrote this
# configuration only after creating the incomplete marker, which it removed only at the end.
initialised_before_sentinel() {
    grep -qxF "$HBA_HEADER" "$PGDATA/pg_hba.conf" 2>/dev/null ||
        grep -qxF "$CONF_HEADER" "$PGDATA/postgresql.conf" 2>/dev/null
}

# An existing data directory starts only when its first initialisation finished.
check_existing_data() {
    if [[ -e $PGDATA/$SENTINEL_NAME ]]; then
        rm -f "$PGDATA/$MARKER_NAME"
        return 0
    fi
    if [[ -e $PGDATA/$MARKER_NAME ]]; then
        die "refusing to start: a previous initialisation of $PGDATA did not finish (marker $PGDATA/$MARKER_NAME), so the database may be half-initialised. Fix the failing init script, then $(remove_volume_hint)"
    fi
    if [[ -s $PGDATA/PG_VERSION ]] && initialised_before_sentinel; then
        log "$PGDATA was initialised completely by an earlier version of this entrypoint; recording that ($SENTINEL_NAME)"
        write_sentinel
        return 0
    fi
    die "refusing to start: the first initialisation of $PGDATA never finished (no $PGDATA/$SENTINEL_NAME: initdb or the init scripts were interrupted, e.g. by a kill, out-of-memory or a reboot), so the application database and the init scripts' objects may be missing. It holds no usable database: $(remove_volume_hint)"
}

# Anything in the data directory but lost+found (the root of a freshly formatted file system)?
has_data() {
    local entry
    for entry in "$PGDATA"/* "$PGDATA"/.[!.]* "$PGDATA"/..?*; do
        [[ ${entry##*/} == lost+found ]] || return 0
    done
    return 1
}

initialise() {
    check_init_scripts
    if [[ -z $POSTGRES_PASSWORD && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
        die "the database is not initialised and no superuser password is set. Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE); POSTGRES_HOST_AUTH_METHOD=trust allows TCP connections without a password (never do that outside a throwaway test)"
    fi
    if [[ $POSTGRES_HOST_AUTH_METHOD == trust ]]; then
        log "WARNING: POSTGRES_HOST_AUTH_METHOD=trust: every TCP client can connect as any user without a password"
    fi

    local -a initdb_args=()
    # POSTGRES_INITDB_ARGS is split like shell words ("--locale=C --data-checksums").
    eval "initdb_args=( $POSTGRES_INITDB_ARGS )"
    if [[ -n $POSTGRES_INITDB_WALDIR ]]; then
        mkdir -p "$POSTGRES_INITDB_WALDIR"
        chmod 0700 "$POSTGRES_INITDB_WALDIR"
        if [[ -n $(ls -A "$POSTGRES_INITDB_WALDIR") ]]; then
            die "refusing to initialise $PGDATA: its WAL folder $POSTGRES_INITDB_WALDIR (POSTGRES_INITDB_WALDIR) is not empty, so it holds the WAL of an earlier cluster whose data directory is gone (the data volume was removed, the WAL volume kept). Nothing was written. That WAL is no use without its data directory: $(remove_volume_hint)"
        fi
        initdb_args+=(--waldir "$POSTGRES_INITDB_WALDIR")
    fi

    trap on_init_exit EXIT
    log "initialising $PGDATA (initdb)"
    if [[ -n $POSTGRES_PASSWORD ]]; then
        initdb --username="$POSTGRES_USER" --no-instructions \
            --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${initdb_args[@]}"
    else
        initdb --username="$POSTGRES_USER" --no-instructions "${initdb_args[@]}"
    fi
    : >"$PGDATA/$MARKER_NAME"

    cat >"$PGDATA/pg_hba.conf" <<EOF
$HBA_HEADER
# TYPE  DATABASE     USER  ADDRESS  METHOD
local   all          all            trust
local   replication  all            trust
host    all          all   all      $POSTGRES_HOST_AUTH_METHOD
host    replication  all   all      $POSTGRES_HOST_AUTH_METHOD
EOF
    cat >>"$PGDATA/postgresql.conf" <<EOF

$CONF_HEADER
listen_addresses = '*'
password_encryption = 'scram-sha-256'
EOF

    temp_server_start "$@"
    export PGPASSWORD=${PGPASSWORD:-$POSTGRES_PASSWORD}
    if [[ $POSTGRES_DB != postgres ]]; then
        local exists
        exists=$(psql_init --dbname postgres --tuples-only --no-align -v db="$POSTGRES_DB" \
            <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
        if [[ -z $exists ]]; then
            log "creating database $POSTGRES_DB"
            psql_init --dbname postgres -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
        fi
    fi
    local f
    for f in "$INITDB_D"/*; do
        run_init_script "$f"
    done
    temp_server_stop
    write_sentinel
    rm -f "$PGDATA/$MARKER_NAME"
    unset PGPASSWORD
    trap - EXIT
    log "initialisation complete; starting PostgreSQL"
}

# The WAL folder (POSTGRES_INITDB_WALDIR) must be writable, or creatable, by the user the server runs as.
check_wal_folder() {
    local wal=${POSTGRES_INITDB_WALDIR%/} parent
    parent=$(dirname "$wal")
    if [[ -d $wal && -w $wal ]] || { [[ ! -e $wal ]] && [[ -w $parent ]]; }; then
        return 0
    fi
    local where=$wal
    [[ -e $wal ]] || where=$parent
    die "cannot write the WAL folder $wal (POSTGRES_INITDB_WALDIR): $where belongs to $(stat -c %U:%G "$where") and is not writable by $(id -un), the user PostgreSQL runs as. Nothing was changed. In the stack the converge gives the WAL volume to the postgres user before PostgreSQL starts: start it with bin/cmx up (not docker compose up alone), or give the volume's root to that user (docker run --rm --user 0 --cap-add CHOWN -v <project>_postgres_wal:/w --entrypoint chown <image> postgres:postgres /w)"
}

# Move the WAL of a cluster initialised without --waldir to $POSTGRES_INITDB_WALDIR, once, with the
# server stopped (this runs before it starts). $PGDATA/pg_wal stays the valid copy until the link
# replaces it, so every interrupted step is redone or finished by the next start:
#   1. copy pg_wal to <waldir>.cmx-partial (a leftover one is deleted first), sync;
#   2. rename it to <waldir> (atomic, same file system), sync;
#   3. rename $PGDATA/pg_wal to $PGDATA/pg_wal.cmx-moved, create the link $PGDATA/pg_wal, sync;
#   4. delete $PGDATA/pg_wal.cmx-moved.
# A start that finds <waldir> complete but no link yet (killed between 2 and 3) copies again: the
# folder in $PGDATA is the one the server used last. One that finds pg_wal.cmx-moved and no pg_wal
# (killed inside 3) puts the folder back first.
move_wal_out() {
    local wal=${POSTGRES_INITDB_WALDIR%/} old=$PGDATA/pg_wal
    local moved=$old.cmx-moved partial=$wal.cmx-partial
    if [[ ! -e $old && ! -L $old && -d $moved ]]; then
        log "an earlier move of the WAL was interrupted before $old was linked; putting $moved back"
        mv -T "$moved" "$old"
    fi
    if [[ -L $old ]]; then
        if [[ $(readlink "$old") != "$wal" ]]; then
            log "WARNING: $old links to $(readlink "$old"), not to POSTGRES_INITDB_WALDIR=$wal; left as it is"
        elif [[ -e $moved ]]; then
            log "the WAL is in $wal; deleting the old folder $moved left by an interrupted move"
            rm -rf "$moved"
        fi
        return 0
    fi
    [[ -d $old ]] || die "refusing to start: $old is missing, so $PGDATA has no WAL; restore it from a backup"
    if [[ -e $wal && $(stat -c %m "$wal") == "$wal" ]]; then
        log "WARNING: POSTGRES_INITDB_WALDIR=$wal is a mount point, so the WAL cannot be moved into it safely (a folder on the volume can); $old is left where it is"
        return 0
    fi
    log "moving the WAL of $PGDATA from $old to $wal (its own volume); the server starts afterwards"
    rm -rf "$partial"
    [[ ! -e $wal ]] || rm -rf "$wal"
    cp -a "$old" "$partial"
    sync
    mv -T "$partial" "$wal"
    sync
    mv -T "$old" "$moved"
    ln -s "$wal" "$old"
    sync
    rm -rf "$moved"
    sync
    log "the WAL of $PGDATA is in $wal now ($old links to it)"
}

main() {
    if [[ ${1:0:1} == - ]]; then
        set -- postgres "$@"
    fi
    if [[ $1 != postgres ]] || wants_help "${@:2}"; then
        exec "$@"
    fi
    load_environment
    if [[ $(id -u) == 0 ]]; then
        drop_privileges "$@"
    fi
    [[ -z $POSTGRES_INITDB_WALDIR ]] || check_wal_folder
    if has_data; then
        check_existing_data
        [[ -z $POSTGRES_INITDB_WALDIR ]] || move_wal_out
    else
        initialise "${@:2}"
    fi
    unset POSTGRES_PASSWORD PGPASSWORD
    exec "$@"
}

main "$@"
