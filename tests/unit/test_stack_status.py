"""stack_status: versions, uptime, URLs with and without credentials, the text lines (no Docker needed)."""

from __future__ import annotations

import datetime

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import stack_status as st


@pytest.mark.parametrize(
    ("service", "output", "expected"),
    [
        ("postgres", "postgres (PostgreSQL) 17.12 (Debian 17.12-0+deb13u1)\n", "PostgreSQL 17.12"),
        ("postgres", "postgres (PostgreSQL) 16.4\n", "PostgreSQL 16.4"),
        ("pgbouncer", "PgBouncer 1.24.1\nlibevent 2.1.12-stable\n", "PgBouncer 1.24.1"),
        ("redis", "Redis server v=7.4.2 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64\n", "Redis 7.4.2"),
        ("storage", "version 8000GB 4.48 pypi linux amd64\n", "SeaweedFS 4.48"),
        ("redis-commander", "0.9.0\n", "Redis Commander 0.9.0"),
        ("postgres", "sh: postgres: not found\n", None),
        ("unknown", "anything", None),
    ],
)
def test_parse_version(service, output, expected):
    assert st.parse_version(service, output) == expected


def test_health_version_comes_from_its_environment():
    env = ["A=1", "HEALTH_VERSION=0.2.0"]
    assert st.server_version("docker", "x", "health", True, env) == "cmx-health 0.2.0"
    assert st.server_version("docker", "x", "health", True, []) is None


def test_uptime_and_its_human_form():
    now = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
    assert st.uptime("2026-12-01T11:58:55.123456789Z", now) == 65
    assert st.uptime("0001-01-01T00:00:00Z", now) is None
    forms = [st.human_duration(s) for s in (None, 5, 65, 3725, 90061)]
    assert forms == ["-", "5s", "1m 5s", "1h 2m", "1d 1h"]


def stack_folder(tmp_path, redis_password=""):
    (tmp_path / "secrets").mkdir()
    secrets = {"postgres_password": "p@ss word", "redis_password": redis_password, "s3_access_key": "AK"}
    secrets["s3_secret_key"] = "SK"
    for name, value in secrets.items():
        (tmp_path / "secrets" / name).write_text(value)
    (tmp_path / ".env").write_text(
        "CMX_PROJECT_NAME=cmx\nCMX_BIND_ADDRESS=127.0.0.1\nPOSTGRES_USER=cmx_user\nPOSTGRES_DB=cmx_db\n"
        "POSTGRES_PORT=5432\nPGBOUNCER_PORT=6432\nREDIS_PORT=6379\nS3_PORT=9000\nS3_BUCKET=b\nHEALTH_PORT=8080\n"
    )
    return st.read_env(str(tmp_path / ".env"))


def test_urls_carry_credentials_only_when_asked(tmp_path):
    stack = stack_folder(tmp_path, redis_password="r:pw")
    plain = st.urls(stack, str(tmp_path), show_credentials=False)
    assert plain["postgres"] == "postgresql://cmx_user@localhost:5432/cmx_db"
    assert plain["redis"] == "redis://localhost:6379"
    assert "SK" not in plain["storage"] and "p%40ss" not in " ".join(plain.values())
    dev = st.urls(stack, str(tmp_path), show_credentials=True)
    assert dev["postgres"] == "postgresql://cmx_user:p%40ss%20word@localhost:5432/cmx_db"
    assert dev["redis"] == "redis://:r%3Apw@localhost:6379"
    assert "secret key SK" in dev["storage"]


def test_collect_without_a_rendered_stack_says_what_to_do(tmp_path):
    with pytest.raises(st.StatusError, match=r"no rendered stack in .*bin/cmx up"):
        st.collect(str(tmp_path))


def test_lines_align_one_line_per_service():
    report = {
        "project": "cmx",
        "project_dir": "/x/.cmx",
        "services": [
            {"service": "postgres", "container": "cmx-postgres", "image": "i:1", "version": "PostgreSQL 17.1",
             "health": "healthy", "uptime": "5s", "url": "postgresql://u@localhost:5432/d"},
            {"service": "redis", "container": "cmx-redis", "image": "i:2", "version": None,
             "health": "exited", "uptime": "-", "url": "redis://localhost:6379"},
        ],
    }  # fmt: skip
    out = st.lines(report, "dev")
    assert out[0] == "CleanMateX stack 'cmx' (dev, /x/.cmx)"
    assert out[1].split() == ["SERVICE", "CONTAINER", "IMAGE", "VERSION", "HEALTH", "UPTIME", "URL"]
    assert out[3].split()[:4] == ["redis", "cmx-redis", "i:2", "-"]
    assert out[2].index("postgresql://") == out[3].index("redis://") == out[1].index("URL")  # aligned
    assert st.lines({**report, "services": []})[1].strip().startswith("no containers")


def test_gui_logins_are_shown_only_with_credentials(tmp_path):
    """The S3 console and Redis Commander logins come from their rendered files, in dev's report only."""
    stack = stack_folder(tmp_path)
    secrets = tmp_path / "secrets"
    (secrets / "seaweedfs_security.toml").write_text(
        '[admin]\nuser = "admin"\npassword = "c\\"on\\u00e4sole"\n'
    )
    (secrets / "redis-commander.json").write_text(
        '{"server": {"httpAuth": {"username": "rc", "password": "g:ui pw"}}, "connections": []}'
    )
    stack.update({"S3_CONSOLE_PORT": "9001", "REDIS_COMMANDER_PORT": "8081"})
    plain = st.urls(stack, str(tmp_path), show_credentials=False)
    assert plain["storage"] == "http://localhost:9000 bucket b, console http://localhost:9001"
    assert plain["redis-commander"] == "http://localhost:8081"
    assert "onäsole" not in " ".join(plain.values()) and "g:ui" not in " ".join(plain.values())
    dev = st.urls(stack, str(tmp_path), show_credentials=True)
    assert dev["storage"].endswith('(access key AK, secret key SK; console login admin / c"onäsole)')
    assert dev["redis-commander"] == "http://localhost:8081 (login rc / g:ui pw)"


def test_gui_logins_missing_or_broken_files_show_no_login(tmp_path):
    stack = stack_folder(tmp_path)
    (tmp_path / "secrets" / "seaweedfs_security.toml").write_text("[admin\n")
    (tmp_path / "secrets" / "redis-commander.json").write_text("{not json")
    assert st.console_login(str(tmp_path)) == ("", "")
    assert st.redis_commander_login(str(tmp_path)) == ("", "")
    dev = st.urls(stack, str(tmp_path), show_credentials=True)
    assert dev["storage"].endswith("(access key AK, secret key SK)")
    assert "login" not in dev["redis-commander"]


def test_external_services_are_rows_with_their_endpoint():
    rows = st.external_services(
        {
            "CMX_EXTERNAL_POSTGRES": "db.internal:5432",
            "CMX_EXTERNAL_S3": "https://s3.internal",
            "REDIS_PORT": "6379",
        }
    )
    assert [(row["service"], row["container"], row["url"]) for row in rows] == [
        ("postgres", "external", "db.internal:5432"),
        ("storage", "external", "https://s3.internal"),
    ]
    assert st.external_services({"POSTGRES_PORT": "5432"}) == []
    text = st.lines({"project": "cmx", "project_dir": "/srv", "services": rows})
    assert any("db.internal:5432" in line and "external" in line for line in text)
