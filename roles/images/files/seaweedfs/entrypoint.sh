#!/bin/sh
# Entrypoint of the CleanMateX SeaweedFS image (cleanmatex.infra images role), compatible with
# the upstream image's: the first argument is a weed subcommand ("mini", "server", "master",
# "volume", "filer", "s3", ...) and gets upstream's defaults (-dir=/data, -logtostderr).
# "weed ..." is accepted as well; an absolute path, sh or bash runs as given (debugging).
# As root it gives /data to the seaweed user and drops to it.
set -eu

# FIPS 140-3 mode on by default like upstream; GODEBUG=fips140=off turns it off.
case ",${GODEBUG:-}," in
    *,fips140=*) ;;
    *) export GODEBUG="${GODEBUG:+$GODEBUG,}fips140=on" ;;
esac

if [ "$(id -u)" = 0 ]; then
    if [ "$(stat -c %u:%g /data)" != "$(id -u seaweed):$(id -g seaweed)" ]; then
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
