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
