"""pg_tls: the TLS settings of the stack's PostgreSQL clients, pg_hba.conf, the certificate's names, and the
SSLRequest handshake (against a real TLS listener and the throwaway PostgreSQL, which serves no TLS)."""

from __future__ import annotations

import socket
import ssl
import struct
import threading

import pytest
from ansible_collections.cleanmatex.infra.plugins.filter import tls as tls_filter
from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_tls
from ansible_collections.cleanmatex.infra.plugins.module_utils.health_report import env_from_stack
from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_scram import login_sqlstate
from tls_support import make_tls_material


def test_client_params_verify_full_with_the_ca_or_no_tls():
    assert pg_tls.client_params("/opt/cmx/secrets/tls/ca.crt") == {
        "sslmode": "verify-full",
        "sslrootcert": "/opt/cmx/secrets/tls/ca.crt",
    }
    assert pg_tls.client_params(None) == {"sslmode": "disable"}
    assert pg_tls.client_params("") == {"sslmode": "disable"}


def test_url_query_quotes_the_path_and_keeps_slashes():
    assert (
        pg_tls.url_query("/srv/app/postgres-ca.crt")
        == "?sslmode=verify-full&sslrootcert=/srv/app/postgres-ca.crt"
    )
    assert (
        pg_tls.url_query("/srv/my app/ca&x.crt")
        == "?sslmode=verify-full&sslrootcert=/srv/my%20app/ca%26x.crt"
    )
    assert pg_tls.url_query(None) == ""
    assert pg_tls.url_query("", "?sslmode=disable") == "?sslmode=disable"
    assert pg_tls.url_sslmode("postgresql://u:p@h:1/d" + pg_tls.url_query("/a b/c.crt")) == (
        "verify-full",
        "/a b/c.crt",
    )
    assert pg_tls.url_sslmode("postgresql://u:p@h:1/d") == (None, None)


def test_pg_hba_tls_only_over_tcp_and_the_socket_as_before():
    lines = [line.split() for line in pg_tls.pg_hba(True).splitlines() if line and not line.startswith("#")]
    assert lines == [
        ["local", "all", "all", "trust"],
        ["hostssl", "all", "all", "all", "scram-sha-256"],
        ["hostnossl", "all", "all", "all", "reject"],
    ]
    assert pg_tls.pg_hba(False) == ""
    assert tls_filter.tls_pg_hba(True) == pg_tls.pg_hba(True)


def test_server_sans_names_addresses_and_services_once():
    assert pg_tls.server_sans(["127.0.0.1", "localhost"]) == [
        "DNS:localhost",
        "IP:127.0.0.1",
        "DNS:postgres",
        "DNS:pgbouncer",
    ]
    sans = pg_tls.server_sans(["10.0.0.5", "DB1.Example.internal", "", None, "0.0.0.0", "::", "fd00::0005"])
    assert sans[-3:] == ["IP:10.0.0.5", "DNS:db1.example.internal", "IP:fd00::5"]
    assert tls_filter.tls_sans(["10.0.0.5"]) == pg_tls.server_sans(["10.0.0.5"])


def test_filter_url_query_treats_empty_as_off():
    assert tls_filter.tls_url_query("") == ""
    assert tls_filter.tls_url_query("/x/ca.crt").startswith("?sslmode=verify-full&sslrootcert=/x/ca.crt")


def test_env_from_stack_verifies_with_the_stack_ca_in_tls_mode(tmp_path):
    (tmp_path / ".env").write_text(
        "POSTGRES_USER=u\nPOSTGRES_DB=db\nPOSTGRES_PORT=25432\nPGBOUNCER_PORT=26432\n"
    )
    assert env_from_stack(str(tmp_path))["HEALTH_DATABASE_URL"].endswith("?sslmode=disable")
    (tmp_path / ".env").write_text(
        "POSTGRES_USER=u\nPOSTGRES_DB=db\nPOSTGRES_PORT=25432\nPGBOUNCER_PORT=26432\nCMX_POSTGRES_TLS=1\n"
    )
    env = env_from_stack(str(tmp_path))
    query = f"?sslmode=verify-full&sslrootcert={tmp_path}/secrets/tls/ca.crt"
    assert env["HEALTH_DATABASE_URL"] == f"postgresql://u@127.0.0.1:25432/db{query}"
    assert env["HEALTH_PGBOUNCER_URL"] == f"postgresql://u@127.0.0.1:26432/db{query}"


# --- the SSLRequest handshake against real listeners -----------------------------------------------------


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 only, not "localhost" (tls_support, cryptography)."""
    return make_tls_material(tmp_path_factory.mktemp("tls"), names=("127.0.0.1",))


@pytest.fixture
def tls_listener(tls_material):
    """Answers PostgreSQL's SSLRequest with 'S', then speaks TLS with the server certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_material.cert, tls_material.key)
    listener = socket.create_server(("127.0.0.1", 0))
    seen = {}

    def serve():
        conn, _ = listener.accept()
        with conn:
            seen["request"] = struct.unpack("!II", conn.recv(8))
            conn.sendall(b"S")
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    seen["data"] = tls.recv(5)
            except (ssl.SSLError, OSError) as error:
                seen["error"] = error

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], seen
    thread.join(5)
    listener.close()


def test_wrap_socket_verifies_the_server_against_the_ca(tls_material, tls_listener):
    port, seen = tls_listener
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        tls = pg_tls.wrap_socket(raw, "127.0.0.1", str(tls_material.ca))
        tls.sendall(b"hello")
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.close()
    assert seen["request"] == (8, pg_tls.SSL_REQUEST_CODE)


def test_wrap_socket_refuses_a_name_the_certificate_does_not_carry(tls_material, tls_listener):
    port, _seen = tls_listener
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        pg_tls.wrap_socket(raw, "localhost", str(tls_material.ca))


def test_wrap_socket_refuses_a_server_without_tls(pg, tls_material):
    with (
        socket.create_connection(("127.0.0.1", pg["port"]), timeout=5) as raw,
        pytest.raises(ValueError, match="does not serve TLS"),
    ):
        pg_tls.wrap_socket(raw, "127.0.0.1", str(tls_material.ca))


def test_login_sqlstate_with_a_ca_refuses_a_plaintext_server(pg, tls_material):
    args = ("127.0.0.1", pg["port"], pg["user"], pg["password"], pg["dbname"])
    assert login_sqlstate(*args) is None  # no TLS asked: logs in as before
    with pytest.raises(ValueError, match="does not serve TLS"):
        login_sqlstate(*args, ca_file=str(tls_material.ca))
