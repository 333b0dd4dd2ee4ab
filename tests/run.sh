#!/usr/bin/env bash
# The test command (README): lint, unit tests, then Molecule converging the real stack with the ci inventory,
# then integration tests. Works on a fresh Debian machine as root: it installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - started))"; }

step "Python toolchain (.venv)"
./bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
# The ci inventory's vault is encrypted with a test password that protects nothing real.
export ANSIBLE_VAULT_PASSWORD_FILE="$PWD/inventories/ci/.vault-pass-ci"

step "Host: Docker engine, Compose v2, image build tools"
ansible-playbook -i inventories/ci playbooks/host.yml

step "Test dependencies: real servers the unit tests start on 127.0.0.1, the pinned Supabase CLI"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # PostgreSQL 15, Redis, PgBouncer and busybox binaries for throwaway servers; Debian's python3-psycopg2
  # proves the /health code runs on the interpreter its image uses.
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postgresql-15 redis-server pgbouncer python3-psycopg2 busybox-static >/dev/null
else
  echo "not root (or no apt-get): tests that need those servers will be skipped"
fi
npm ci --no-audit --no-fund --loglevel=error

step "Lint: yamllint, ruff, ansible-lint (production profile)"
yamllint -s .
ruff check .
ruff format --check .
ansible-lint

step "Unit tests"
pytest -q tests/unit

step "Molecule: converge, idempotence, verify (real stack)"
molecule test

step "Integration tests"
pytest -q tests/integration

step "All green"
