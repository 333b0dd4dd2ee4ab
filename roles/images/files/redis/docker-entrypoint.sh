#!/bin/sh
# Entrypoint of the CleanMateX Redis image (cleanmatex.infra images role).
#   docker run IMAGE                        -> redis-server
#   docker run IMAGE /etc/redis/redis.conf  -> redis-server /etc/redis/redis.conf
#   docker run IMAGE --appendonly yes       -> redis-server --appendonly yes
# As root it gives /data to the redis user and runs redis-server as that user. Like the
# official image, protected mode is off unless the flags or the config file set it.
set -eu

case "${1:-}" in
    -* | *.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ]; then
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis:redis '{}' +
        exec setpriv --reuid=redis --regid=redis --init-groups -- "$0" "$@"
    fi

    protected_mode_set=no
    for arg in "$@"; do
        case "$arg" in
            # informational runs take no config options
            --protected-mode | -v | --version | -h | --help | --test-memory | --check-system) protected_mode_set=yes ;;
        esac
    done
    # redis-server [config file] [--option value ...]; "-" reads the config from stdin.
    config=
    case "${2:-}" in
        -) config=- ;;
        -* | '') ;;
        *) config=$2 ;;
    esac
    if [ -n "$config" ] && [ -f "$config" ] && grep -Eqi '^[[:space:]]*protected-mode[[:space:]]' "$config"; then
        protected_mode_set=yes
    fi
    if [ "$protected_mode_set" = no ]; then
        if [ -n "$config" ]; then
            shift 2
            set -- redis-server "$config" --protected-mode no "$@"
        else
            shift
            set -- redis-server --protected-mode no "$@"
        fi
    fi
    umask 0077
fi

exec "$@"
