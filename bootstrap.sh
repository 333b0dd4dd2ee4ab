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
  total=$(grep -c '^[A-Za-z]' requirements.txt)
  echo "bootstrap: installing the pinned toolchain ($total packages) into .venv (log: .venv/pip.log) ..."
  # Both files pin every package with its SHA-256: pip refuses a file that differs from the locked one.
  { .venv/bin/pip install --disable-pip-version-check --require-hashes -r requirements.txt \
      && .venv/bin/pip install --disable-pip-version-check --require-hashes --no-deps -r requirements-compose.txt
  } > .venv/pip.log 2>&1 &
  pip_pid=$!
  began=$SECONDS
  # A line every 10 s while pip works: a first run takes a minute or two.
  while kill -0 "$pip_pid" 2>/dev/null; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pip_pid" 2>/dev/null && sleep 1; done
    if kill -0 "$pip_pid" 2>/dev/null; then
      fetched=$(grep -c '^Collecting ' .venv/pip.log || true)
      phase="$fetched of $total packages fetched"
      grep -q '^Installing collected packages' .venv/pip.log && phase="installing $total packages"
      echo "bootstrap: ... $((SECONDS - began)) s, $phase"
    fi
  done
  if ! wait "$pip_pid"; then
    tail -n 40 .venv/pip.log >&2
    echo "bootstrap: pip failed (full log: .venv/pip.log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
  echo "bootstrap: toolchain installed in $((SECONDS - began)) s"
fi
echo "bootstrap: .venv ready ($(.venv/bin/ansible --version | sed -n 1p))"
