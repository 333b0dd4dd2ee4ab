#!/bin/sh
# Entrypoint of the CleanMateX SeaweedFS image (cleanmatex.infra images role), compatible with
# the upstream image's: the first argument is a weed subcommand ("mini", "server", "master",
# "volume", "filer", "s3", ...) and gets upstream's defaults (-dir=/data, -logtostderr).
# "weed ..." is accepted as well; an absolute path, sh or bash runs as given (debugging).
# As root it gives /data to the seaweed user and drops to it.
# "front ARGS -- SUBCOMMAND ..." runs storage_front.py: SeaweedFS bound to 127.0.0.1 inside the
# container, only the forwarded ports (S3, the admin UI behind a Host check) reachable from outside.
set -eu

# FIPS 140-3 mode on by default like upstream; GODEBUG=fips140=off turns it off.
case ",${GODEBUG:-}," in
    *,fips140=*) ;;
    *) export GODEBUG="${GODEBUG:+$GODEBUG,}fips140=on" ;;
esac

if [ "$(id -u)" = 0 ]; then
    # Any file not owned by seaweed (a volume written by an earlier root-run container: its top folder
    # came from the image and is seaweed's, the files in it are root's) gives the whole tree over once.
    if [ -n "$(find /data -xdev \( ! -user seaweed -o ! -group seaweed \) -print -quit)" ]; then
        echo "entrypoint: giving /data to the seaweed user" >&2
        chown -R seaweed:seaweed /data
    fi
    exec setpriv --reuid=seaweed --regid=seaweed --init-groups -- "$0" "$@"
fi

# has_flag NAME ARGS...: true when -NAME / --NAME (with or without =value) is among ARGS.
has_flag() {
    name=$1
    shift
    for arg in "$@"; do
        case "$arg" in
            "-$name" | "--$name" | "-$name="* | "--$name="*) return 0 ;;
        esac
    done
    return 1
}

[ "$#" -gt 0 ] || set -- mini
case "$1" in
    weed)
        shift
        exec /usr/bin/weed "$@"
        ;;
    front)
        # front OPTIONS -- SUBCOMMAND ARGS: the subcommand runs through this entrypoint again (its defaults).
        shift
        seen=
        for arg in "$@"; do
            shift
            set -- "$@" "$arg"
            if [ "$arg" = "--" ] && [ -z "$seen" ]; then
                seen=1
                set -- "$@" "$0"
            fi
        done
        exec /usr/bin/python3 /usr/local/lib/cmx/storage_front.py "$@"
        ;;
    /* | sh | bash)
        exec "$@"
        ;;
    mini)
        shift
        has_flag dir "$@" || set -- -dir=/data "$@"
        exec /usr/bin/weed -logtostderr=true mini "$@"
        ;;
    server)
        shift
        has_flag dir "$@" || set -- -dir=/data "$@"
        has_flag volume.max "$@" || set -- -volume.max=0 "$@"
        exec /usr/bin/weed -logtostderr=true server -master.volumeSizeLimitMB=1024 "$@"
        ;;
    master)
        shift
        exec /usr/bin/weed -logtostderr=true master -mdir=/data -volumeSizeLimitMB=1024 "$@"
        ;;
    volume)
        shift
        has_flag max "$@" || set -- -max=0 "$@"
        exec /usr/bin/weed -logtostderr=true volume -dir=/data "$@"
        ;;
    filer | s3 | webdav | admin | worker | iam | sftp | mq.broker)
        sub=$1
        shift
        exec /usr/bin/weed -logtostderr=true "$sub" "$@"
        ;;
    *)
        exec /usr/bin/weed "$@"
        ;;
esac
