#!/usr/bin/env bash
# Create (or refresh) .venv with the project's pinned Python toolchain.
# Idempotent: does nothing when .venv already matches requirements*.txt.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null; then
  echo "bootstrap: Python 3.11 or newer is required (found: $("$PYTHON" --version 2>&1))." >&2
  echo "bootstrap: install python3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "bootstrap: the venv module is missing: apt-get install -y python3-venv" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
want=$(cat requirements.txt requirements-compose.txt | sha256sum | cut -d' ' -f1)
stamp=.venv/.requirements.sha256
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing the pinned toolchain into .venv (log: .venv/pip.log) ..."
  if ! { .venv/bin/pip install --disable-pip-version-check -r requirements.txt \
         && .venv/bin/pip install --disable-pip-version-check --require-hashes --no-deps -r requirements-compose.txt
       } > .venv/pip.log 2>&1; then
    tail -n 40 .venv/pip.log >&2
    echo "bootstrap: pip failed (full log: .venv/pip.log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
echo "bootstrap: .venv ready ($(.venv/bin/ansible --version | sed -n 1p))"
