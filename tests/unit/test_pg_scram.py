"""SCRAM verifiers computed on the client are the ones PostgreSQL computes, and a refused login is told by
its SQLSTATE read from the protocol (against the throwaway PostgreSQL 15 cluster)."""

from __future__ import annotations

import itertools

import psycopg2
import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_scram import (
    error_fields,
    login_sqlstate,
    parse_verifier,
    saslprep,
    scram_verifier,
)

HOSTILE_PASSWORDS = [
    "plain-ascii",
    "pä$s'w\"o:r#d x\\y",  # quotes, $, :, #, space, backslash, non-ASCII
    "a\u0308bc",  # decomposed: SASLprep composes it (NFKC)
    "x\u00a0y\u00adz",  # non-ASCII space mapped to a space, soft hyphen mapped to nothing
    "\ufb01\u00e4",  # ligature: NFKC expands it
    "\u00e4\u0007",  # a control character: SASLprep prohibits it, PostgreSQL hashes the raw bytes
    "\u0627a\u0628",  # right-to-left mixed with left-to-right: prohibited, raw bytes
    "\u0627\u0628",  # right-to-left only: allowed
]
_names = itertools.count(1)


@pytest.fixture
def admin(admin_cursor):
    return admin_cursor


def new_role(admin, password, login=True):
    name = f"scram_role_{next(_names)}"
    admin.execute(f"CREATE ROLE {name} {'LOGIN' if login else 'NOLOGIN'} PASSWORD %s", (password,))
    return name


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_client_verifier_is_the_one_postgresql_computes(throwaway_pg_cluster, admin, password):
    role = new_role(admin, password)  # the server hashes the plain password itself (test only)
    admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
    (stored,) = admin.fetchone()
    iterations, salt = parse_verifier(stored)
    assert scram_verifier(password, salt, iterations) == stored


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_a_stored_client_verifier_lets_the_password_in(throwaway_pg_cluster, admin, password):
    role = new_role(admin, "placeholder-password")
    admin.execute(f"ALTER ROLE {role} PASSWORD %s", (scram_verifier(password),))
    psycopg2.connect(
        host="127.0.0.1", port=throwaway_pg_cluster.port, user=role, password=password, dbname="postgres"
    ).close()
    assert login_sqlstate("127.0.0.1", throwaway_pg_cluster.port, role, password, "postgres") is None


def test_verifier_format_and_fresh_salt():
    first, second = scram_verifier("secret"), scram_verifier("secret")
    assert first != second  # a random salt each time
    scheme, rest = first.split("$", 1)
    head, keys = rest.split("$")
    assert scheme == "SCRAM-SHA-256" and head.startswith("4096:") and len(keys.split(":")) == 2
    assert "secret" not in first
    with pytest.raises(ValueError):
        parse_verifier("md5" + "0" * 32)


def test_saslprep_follows_postgresql():
    assert saslprep("only ascii \x07 stays") == "only ascii \x07 stays"
    assert saslprep("a\u0308") == "\u00e4"
    assert saslprep("x\u00a0y\u00adz") == "x yz"
    assert saslprep("\u00e4\u0007") == "\u00e4\u0007"  # prohibited: unchanged
    assert saslprep("\u0627a\u0628") == "\u0627a\u0628"
    assert saslprep("\u00ad") == "\u00ad"  # maps to nothing: PostgreSQL keeps the raw password


def test_login_sqlstate_from_a_real_server(throwaway_pg_cluster, admin):
    port = throwaway_pg_cluster.port
    role = new_role(admin, "right-password")
    assert login_sqlstate("127.0.0.1", port, role, "right-password", "postgres") is None
    assert login_sqlstate("127.0.0.1", port, role, "wrong-password", "postgres") == "28P01"
    assert login_sqlstate("127.0.0.1", port, "no_such_role", "x", "postgres") == "28P01"
    assert login_sqlstate("127.0.0.1", port, role, "right-password", "no_such_db") == "3D000"
    locked = new_role(admin, "right-password", login=False)
    assert login_sqlstate("127.0.0.1", port, locked, "right-password", "postgres") == "28000"


def test_error_fields_parse_an_error_response():
    body = b"SFATAL\0VFATAL\0C28P01\0MPasswort-Authentifizierung f\xc3\xbcr Benutzer fehlgeschlagen\0\0"
    fields = error_fields(body)
    assert fields["C"] == "28P01" and fields["S"] == "FATAL" and "fehlgeschlagen" in fields["M"]
