"""Where the converge's clients and the apps connect for each bind address."""

from __future__ import annotations

import pytest
from ansible_collections.cleanmatex.infra.plugins.filter.addresses import service_host


@pytest.mark.parametrize(
    ("bind", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("", "127.0.0.1"),
     ("10.231.77.10", "10.231.77.10"), ("192.168.1.20", "192.168.1.20")],
)  # fmt: skip
def test_a_private_bind_address_is_reached_on_itself_others_on_loopback(bind, expected):
    assert service_host(bind) == expected


def test_the_app_env_keeps_localhost_for_a_loopback_bind():
    assert service_host("127.0.0.1", "localhost") == "localhost"
    assert service_host("10.0.0.5", "localhost") == "10.0.0.5"
