#!/usr/bin/env bash
# The test command (README): lint, unit tests, Molecule converging the real stack with the ci inventory,
# then integration tests and fault tests (tests/faults).
#
# It never touches a developer's dev stack: the ci inventory is its own compose project (cmx-ci), ports
# and folder (.cmx-ci/). A dev stack that is up is recorded before the tests and compared after them
# (containers, start times, rows, keys, objects, every file under .cmx/): any difference fails the run.
#
# Steps that change the machine — installing Debian packages, installing or starting Docker, restarting
# dockerd — run only with CI=true (a throwaway machine; CI itself). Elsewhere they are skipped and listed
# once at the end, with how to run everything.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - started))"; }
ci=false
[ "${CI:-}" = true ] && ci=true
skipped=()

step "Python toolchain (.venv)"
./bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
# The ci inventory's vault is encrypted with a test password that protects nothing real.
export ANSIBLE_VAULT_PASSWORD_FILE="$PWD/inventories/ci/.vault-pass-ci"

step "Host: Docker engine, Compose v2, image build tools"
if $ci; then
  ansible-playbook -i inventories/ci playbooks/host.yml
else
  # Check only: nothing is installed or started behind a developer's back.
  ansible-playbook -i inventories/ci playbooks/host.yml -e cmx_docker_install=never
fi

step "Test dependencies: real servers the unit tests start on 127.0.0.1, the pinned Supabase CLI"
test_packages=(postgresql-15 redis-server pgbouncer python3-psycopg2 busybox-static openssh-client)
if $ci && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # PostgreSQL 15, Redis, PgBouncer and busybox binaries for throwaway servers; Debian's python3-psycopg2
  # proves the /health code runs on the interpreter its image uses; ssh reaches the staging test host.
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${test_packages[@]}" >/dev/null
else
  missing=()
  for package in "${test_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing: ${missing[*]} (tests that start those servers will be skipped)"
    skipped+=("installing ${missing[*]}: the unit tests that start those servers skip (apt-get install ${missing[*]})")
  fi
fi
npm ci --no-audit --no-fund --loglevel=error

step "Lint: yamllint, ruff, ansible-lint (production profile)"
yamllint -s .
ruff check .
ruff format --check .
ansible-lint

step "Secret scan: detect-secrets over every tracked file against .secrets.baseline (audited findings)"
# A new finding fails the run (tests/secret_scan.py says how to resolve it); moved lines do not.
python tests/secret_scan.py

step "Unit tests"
pytest -q tests/unit

guard_file=$(mktemp)
trap 'rm -f "$guard_file"' EXIT
if $ci; then
  step "A dev stack with data (dev inventory, project cmx, .cmx/): the tests below must leave it untouched"
  ansible-playbook dev.yml
  python tests/dev_stack_guard.py fill
  ansible-playbook playbooks/backup.yml
fi
step "Record the dev stack (if any) before the tests"
python tests/dev_stack_guard.py snapshot "$guard_file"

step "Molecule: converge, idempotence, verify, destroy (real stack, project cmx-ci)"
molecule test

step "Molecule staging: a separate host over SSH, no registry (converge, idempotence, verify, destroy)"
if command -v ssh >/dev/null; then
  molecule test -s staging
else
  skipped+=("the staging scenario (no ssh client: apt-get install openssh-client)")
fi

step "Molecule managed: every data service external (TLS stand-ins on their own addresses), app host over SSH"
if command -v ssh >/dev/null; then
  molecule test -s managed
else
  skipped+=("the managed scenario (no ssh client: apt-get install openssh-client)")
fi

step "The dev stack is exactly as it was"
python tests/dev_stack_guard.py compare "$guard_file"

if $ci; then
  step "Host-disruptive test: data survives a dockerd restart (dev stack)"
  CMX_HOST_DISRUPTIVE=1 CMX_INVENTORY="$PWD/inventories/dev" CMX_PROJECT_DIR="$PWD/.cmx" \
    PYTHONPATH="$PWD/.collections" pytest -q molecule/default/tests
  ansible-playbook playbooks/down.yml -e cmx_down_remove_volumes=true
else
  skipped+=("the dockerd restart test (it restarts the Docker engine, and with it every container on this machine)")
fi

step "Integration tests"
pytest -q tests/integration

step "Fault tests: a torn Redis AOF, full data volumes (one-off cmxfault-* containers of the built images)"
if docker info >/dev/null 2>&1; then
  pytest -q tests/faults
else
  skipped+=("the fault tests in tests/faults (no Docker engine answers: start dockerd, then pytest -q tests/faults)")
fi

step "All green"
if [ ${#skipped[@]} -gt 0 ]; then
  echo "Skipped on this machine because CI is not set (they change the machine):"
  printf '  - %s\n' "${skipped[@]}"
  echo "Run everything on a throwaway machine with: CI=true ./tests/run.sh"
fi
