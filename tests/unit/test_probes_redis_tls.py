"""The Redis probe over TLS (rediss://, managed Redis) against a real redis-server on 127.0.0.1.

The server serves TLS only (no plaintext port) with requirepass, its certificate signed by a throwaway CA
(tests/unit/tls_support.py); the certificate names 127.0.0.1 only, so "localhost" is a host name mismatch.
"""

from __future__ import annotations

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
from ansible_collections.cleanmatex.infra.plugins.modules import cmx_health
from ansible_collections.cleanmatex.infra.tests.module_main import run_main
from tls_support import TlsRedisServer, make_tls_material

PASSWORD = "cmx-tls-redis-secret"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_material(tmp_path_factory.mktemp("redis-tls"), names=("127.0.0.1",))


@pytest.fixture(scope="module")
def redis_tls(tls):
    with TlsRedisServer(tls, PASSWORD) as server:
        yield server


def test_rediss_url_with_the_ca_is_up(redis_tls, tls):
    res = probes.probe_redis(url=redis_tls.url, ca_file=str(tls.ca), timeout=5)
    assert res.up, res
    assert res.error is None


def test_tls_option_overrides_the_url_scheme(redis_tls, tls):
    plain_url = f"redis://127.0.0.1:{redis_tls.port}/0"
    assert probes.probe_redis(url=plain_url, password=PASSWORD, tls=True, ca_file=str(tls.ca), timeout=5).up
    res = probes.probe_redis(url=redis_tls.url, tls=False, timeout=5)
    assert res.status == "down"  # the server speaks TLS only: plaintext is dropped
    assert "rediss://" in res.error
    assert PASSWORD not in res.error


def test_host_and_port_with_tls_and_the_ca_is_up(redis_tls, tls):
    res = probes.probe_redis(
        host="127.0.0.1", port=redis_tls.port, password=PASSWORD, tls=True, ca_file=str(tls.ca), timeout=5
    )
    assert res.up, res


def test_another_ca_is_down_with_a_clear_tls_message(redis_tls, tls):
    res = probes.probe_redis(url=redis_tls.url, ca_file=str(tls.other_ca), timeout=5)
    assert res.status == "down"
    assert res.error == (
        "TLS: certificate verify failed (unable to get local issuer certificate)"
        f" at 127.0.0.1:{redis_tls.port}"
    )
    assert PASSWORD not in res.error


def test_the_system_cas_do_not_trust_a_private_ca(redis_tls):
    res = probes.probe_redis(url=redis_tls.url, timeout=5)
    assert res.status == "down"
    assert res.error.startswith("TLS: certificate verify failed (")
    assert res.error.endswith(f" at 127.0.0.1:{redis_tls.port}")


def test_a_name_the_certificate_does_not_carry_is_down(redis_tls, tls):
    res = probes.probe_redis(
        host="localhost", port=redis_tls.port, password=PASSWORD, tls=True, ca_file=str(tls.ca), timeout=5
    )
    assert res.status == "down"
    assert res.error.startswith("TLS: certificate verify failed (Hostname mismatch")
    assert "'localhost'" in res.error


def test_wrong_password_over_tls_is_down_with_the_auth_message(redis_tls, tls):
    url = f"rediss://:not-the-password@127.0.0.1:{redis_tls.port}/0"
    res = probes.probe_redis(url=url, ca_file=str(tls.ca), timeout=5)
    assert res.status == "down"
    assert res.error.startswith("AUTH failed: WRONGPASS"), res.error
    assert "not-the-password" not in res.error


def test_no_password_over_tls_is_down_with_noauth(redis_tls, tls):
    res = probes.probe_redis(url=f"rediss://127.0.0.1:{redis_tls.port}/0", ca_file=str(tls.ca), timeout=5)
    assert res.status == "down"
    assert res.error.startswith("NOAUTH")


def test_a_missing_ca_file_says_so(redis_tls, tmp_path):
    missing = tmp_path / "nope.crt"
    res = probes.probe_redis(url=redis_tls.url, ca_file=str(missing), timeout=5)
    assert res.status == "down"
    assert f"TLS: cannot read CA file {missing}: no such file or directory" in res.error


def test_a_ca_file_without_a_certificate_says_so(redis_tls, tmp_path):
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    res = probes.probe_redis(url=redis_tls.url, ca_file=str(junk), timeout=5)
    assert res.status == "down"
    assert f"TLS: CA file {junk} holds no usable PEM certificate" in res.error


def test_module_spec_takes_tls_and_ca_file(redis_tls, tls):
    """The module suboptions (cmx_health, cmx_wait_healthy) carry tls and ca_file to the probe."""
    base = {
        "name": "redis",
        "type": "redis",
        "host": "127.0.0.1",
        "port": redis_tls.port,
        "password": PASSWORD,
    }
    good = run_main(
        cmx_health, {"services": [{**base, "tls": True, "ca_file": str(tls.ca)}], "probe_timeout": 5}
    )
    assert good["report"]["services"]["redis"]["status"] == "up", good
    bad = run_main(cmx_health, {"services": [{**base, "tls": True, "ca_file": str(tls.other_ca)}]})
    assert bad["report"]["services"]["redis"]["status"] == "down"
    assert bad["errors"]["redis"].startswith("TLS: certificate verify failed")
    plain = run_main(cmx_health, {"services": [base]})  # tls unset, no URL: plaintext, refused by the server
    assert plain["report"]["services"]["redis"]["status"] == "down"
