"""Labels that change with a secret are keyed digests (HMAC under the host's key), not its SHA-256."""

from __future__ import annotations

import hashlib
import stat

from ansible_collections.cleanmatex.infra.plugins.module_utils.config_digest import config_digest, read_key
from conftest import PROJECT_DIR, container, inspect

LABEL = "org.cleanmatex.config-hash"


def _label(service: str) -> str:
    return inspect(container(service))["Config"]["Labels"][LABEL]


def test_labels_are_hmacs_under_the_host_key_not_plain_hashes(inv):
    key_file = PROJECT_DIR / "secrets" / "label_hmac.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = read_key(str(key_file))
    # Redis: its config file and its password (what the label used to be a plain SHA-256 of).
    redis_conf = (PROJECT_DIR / "secrets" / "redis.conf").read_text()
    password = inv["cmx_redis_password"]
    assert _label("redis") == config_digest(key, [redis_conf, password])
    assert _label("redis") != hashlib.sha256((redis_conf + password).encode()).hexdigest()
    # PgBouncer: its rendered configuration.
    ini = (PROJECT_DIR / "pgbouncer" / "pgbouncer.ini").read_text()
    assert _label("pgbouncer") == config_digest(key, [ini])
    assert _label("pgbouncer") != hashlib.sha256(ini.encode()).hexdigest()
