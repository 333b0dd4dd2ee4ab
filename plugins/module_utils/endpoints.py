# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Where each data service is: a container of the stack on this host, or an external (managed) service.

`resolve(settings)` turns the inventory's settings (docs/external-services.md) into one mapping every role
reads (the fact `cmx_endpoints`, set by the endpoints role): for each service its mode, the address the
converge connects to from the host, the one the stack's containers use, and the TLS settings of both.
`problems(settings, environment)` lists what is wrong with those settings, each with the variable to fix;
the env validation reports them with the rest of the environment, all at once.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse

MODES = ("container", "external")
SERVICES = ("postgres", "pgbouncer", "redis", "s3")
# PostgreSQL majors: those the Supabase CLI supports, and those the stack's own container can run.
# The majors the Supabase CLI supports, each with the sources that provide it for the stack's own container.
POSTGRES_MAJORS = (15, 17)
POSTGRES_SOURCES = {15: "Debian bookworm, postgres:15-alpine", 17: "Debian trixie, postgres:17-alpine"}
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
PLAINTEXT_SSLMODES = ("disable", "allow", "prefer")
ADDRESSINGS = ("path", "virtual")
WILDCARDS = ("", "0.0.0.0", "::", "[::]")
# Where CA files of external services land on the host (under cmx_project_dir) and in the containers.
CA_DIR = "secrets/ca"
CONTAINER_CA_DIR = "/run/secrets/ca"
# The stack's own CA (cmx_tls_enabled) on the host and in the containers.
STACK_TLS_CA = "secrets/tls/ca.crt"
CONTAINER_TLS_CA = "/run/secrets/tls/ca.crt"


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return _text(value).lower() in ("1", "true", "yes", "on")


def mode(settings: dict, service: str) -> str:
    return _text(settings.get(f"{service}_mode")) or "container"


def is_loopback(host: str) -> bool:
    host = _text(host).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_host(bind_address, loopback: str = "127.0.0.1") -> str:
    """cmx_bind_address -> where clients on the host reach a published port (also the filter service_host).

    A wildcard or the usual loopback names are reached on `loopback`; any other address (a private one in
    staging, or another 127.x) on itself: nothing else listens then."""
    address = _text(bind_address)
    if address in WILDCARDS or address in ("127.0.0.1", "localhost", "::1"):
        return loopback
    return address


def _ca(settings: dict, service: str, name: str) -> tuple[str, str, str]:
    """(controller path, host path, container path) of a service's CA file, or three empty strings."""
    source = _text(settings.get(f"{service}_ca_file"))
    if not source:
        return "", "", ""
    project_dir = _text(settings.get("project_dir")).rstrip("/")
    return source, f"{project_dir}/{CA_DIR}/{name}.crt", f"{CONTAINER_CA_DIR}/{name}.crt"


def _postgres_tls_of_stack(settings: dict) -> dict:
    """TLS of the stack's own PostgreSQL and PgBouncer (cmx_tls_enabled: verify-full with its CA)."""
    if _bool(settings.get("tls_enabled")):
        project_dir = _text(settings.get("project_dir")).rstrip("/")
        return {
            "sslmode": "verify-full",
            "sslrootcert": f"{project_dir}/{STACK_TLS_CA}",
            "container_sslrootcert": CONTAINER_TLS_CA,
        }
    return {"sslmode": "disable", "sslrootcert": "", "container_sslrootcert": ""}


def _postgres(settings: dict) -> dict:
    host = local_host(settings.get("bind_address"))
    port = int(settings.get("postgres_port") or 5432)
    if mode(settings, "postgres") == "container":
        return {
            "mode": "container",
            "host": host,
            "port": port,
            "service_host": "postgres",
            "service_port": 5432,
            "ca_source": "",
        } | _postgres_tls_of_stack(settings)
    source, on_host, in_container = _ca(settings, "postgres", "postgres")
    external = _text(settings.get("postgres_host"))
    return {
        "mode": "external",
        "host": external,
        "port": port,
        "service_host": external,
        "service_port": port,
        "sslmode": _text(settings.get("postgres_sslmode")) or "verify-full",
        "sslrootcert": on_host,
        "container_sslrootcert": in_container,
        "ca_source": source,
    }


def _pgbouncer(settings: dict, postgres: dict) -> dict:
    port = int(settings.get("pgbouncer_port") or 6432)
    # What a PgBouncer of the stack connects to: the stack's PostgreSQL or the external one.
    upstream = {
        key: postgres[key]
        for key in ("mode", "service_host", "service_port", "sslmode", "container_sslrootcert")
    }
    if mode(settings, "pgbouncer") == "container":
        return {
            "mode": "container",
            "host": local_host(settings.get("bind_address")),
            "port": port,
            "service_host": "pgbouncer",
            "service_port": 6432,
            "ca_source": "",
            "upstream": upstream,
        } | _postgres_tls_of_stack(settings)
    external = _text(settings.get("pgbouncer_host"))
    tls = {key: postgres[key] for key in ("sslmode", "sslrootcert", "container_sslrootcert")}
    return {
        "mode": "external",
        "host": external,
        "port": port,
        "service_host": external,
        "service_port": port,
        "ca_source": "",
        "upstream": upstream,
    } | tls


def _redis(settings: dict) -> dict:
    port = int(settings.get("redis_port") or 6379)
    if mode(settings, "redis") == "container":
        return {
            "mode": "container",
            "host": local_host(settings.get("bind_address")),
            "port": port,
            "tls": False,
            "ca_file": "",
            "container_ca_file": "",
            "ca_source": "",
            "service_host": "redis",
            "service_port": 6379,
        }
    source, on_host, in_container = _ca(settings, "redis", "redis")
    external = _text(settings.get("redis_host"))
    tls = settings.get("redis_tls")
    return {
        "mode": "external",
        "host": external,
        "port": port,
        "tls": True if tls is None or _text(tls) == "" else _bool(tls),
        "ca_file": on_host,
        "container_ca_file": in_container,
        "ca_source": source,
        "service_host": external,
        "service_port": port,
    }


def _s3(settings: dict) -> dict:
    if mode(settings, "s3") == "container":
        port = int(settings.get("s3_port") or 9000)
        engine = _text(settings.get("storage_engine")) or "seaweedfs"
        return {
            "mode": "container",
            "endpoint": f"http://{local_host(settings.get('bind_address'))}:{port}",
            "service_endpoint": "http://storage:9000",
            "addressing": "path",
            "ca_file": "",
            "container_ca_file": "",
            "ca_source": "",
            "health_path": "/healthz" if engine == "seaweedfs" else "/minio/health/live",
            "create_bucket": True,
        }
    source, on_host, in_container = _ca(settings, "s3", "s3")
    endpoint = _text(settings.get("s3_endpoint")).rstrip("/")
    create = settings.get("s3_create_bucket")
    return {
        "mode": "external",
        "endpoint": endpoint,
        "service_endpoint": endpoint,
        "addressing": _text(settings.get("s3_addressing")) or "path",
        "ca_file": on_host,
        "container_ca_file": in_container,
        "ca_source": source,
        # Managed S3 has no health endpoint: the signed bucket check is the probe.
        "health_path": "",
        "create_bucket": True if create is None or _text(create) == "" else _bool(create),
    }


def resolve(settings: dict) -> dict:
    """The `cmx_endpoints` mapping for the inventory's settings (see the module docstring)."""
    postgres = _postgres(settings)
    services = {
        "postgres": postgres,
        "pgbouncer": _pgbouncer(settings, postgres),
        "redis": _redis(settings),
        "s3": _s3(settings),
    }
    compose_names = {"postgres": "postgres", "pgbouncer": "pgbouncer", "redis": "redis", "s3": "storage"}
    # The settings themselves (no secrets in them): the env validation checks them (problems()).
    services["settings"] = dict(settings)
    services["containers"] = [
        compose_names[name] for name in SERVICES if services[name]["mode"] == "container"
    ]
    services["external"] = [name for name in SERVICES if services[name]["mode"] == "external"]
    # CA files to copy from the controller to the host (deduplicated by destination).
    services["ca_files"] = [
        {
            "src": services[name]["ca_source"],
            "dest": services[name].get("sslrootcert") or services[name]["ca_file"],
        }
        for name in ("postgres", "redis", "s3")
        if services[name]["ca_source"]
    ]
    return services


def libpq_query(endpoint: dict, side: str = "container") -> str:
    """The URL query carrying a PostgreSQL endpoint's TLS settings ("" when it is plaintext): the CA path the
    containers see (`side` container) or the host's (`side` host)."""
    sslmode = endpoint.get("sslmode") or "disable"
    if sslmode == "disable":
        return ""
    params = {"sslmode": sslmode}
    ca_file = endpoint.get("container_sslrootcert" if side == "container" else "sslrootcert")
    if ca_file:
        params["sslrootcert"] = ca_file
    return "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="/")


def url_host(host: str) -> str:
    """A host for a URL: an IPv6 address in brackets."""
    host = _text(host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _problem(variable: str, message: str, expected: str) -> dict:
    return {"variable": variable, "message": message, "expected": expected}


def _check_ca(settings: dict, service: str, out: list) -> None:
    path = _text(settings.get(f"{service}_ca_file"))
    if path and not os.path.isfile(path):
        out.append(
            _problem(
                f"cmx_{service}_ca_file",
                f"no file at {path!r} on the control machine",
                "the path of a PEM CA bundle on the control machine",
            )
        )


def problems(settings: dict, environment: str) -> list[dict]:
    """Every problem of the services' settings: each names the inventory variable, what is wrong, the fix."""
    out: list[dict] = []
    strict = environment not in ("dev",)
    for service in SERVICES:
        value = mode(settings, service)
        if value not in MODES:
            out.append(_problem(f"cmx_{service}_mode", f"unknown mode {value!r}", "container or external"))
    major = _text(settings.get("postgres_major")) or "17"
    if not major.isdigit() or int(major) not in POSTGRES_MAJORS:
        supported = " or ".join(f"{m} ({POSTGRES_SOURCES[m]})" for m in POSTGRES_MAJORS)
        out.append(
            _problem(
                "cmx_postgres_major",
                f"unsupported PostgreSQL major {major!r} (Supabase and the image sources have 15 and 17)",
                supported,
            )
        )
    if mode(settings, "pgbouncer") == "external" and mode(settings, "postgres") != "external":
        out.append(
            _problem(
                "cmx_pgbouncer_mode",
                "an external pooler in front of the stack's own PostgreSQL container",
                "container (or set cmx_postgres_mode: external too)",
            )
        )
    if mode(settings, "postgres") == "external":
        host = _text(settings.get("postgres_host"))
        sslmode = _text(settings.get("postgres_sslmode")) or "verify-full"
        if not host:
            out.append(
                _problem(
                    "cmx_postgres_host",
                    "external PostgreSQL without an endpoint",
                    "the server's host name (RDS: <db>.<id>.<region>.rds.amazonaws.com)",
                )
            )
        if sslmode not in SSLMODES:
            out.append(_problem("cmx_postgres_sslmode", f"unknown sslmode {sslmode!r}", ", ".join(SSLMODES)))
        elif strict and sslmode in PLAINTEXT_SSLMODES and host and not is_loopback(host):
            out.append(
                _problem(
                    "cmx_postgres_sslmode",
                    f"plaintext (sslmode={sslmode}) to {host}, which is not "
                    f"a loopback address, in {environment}",
                    "verify-full with cmx_postgres_ca_file",
                )
            )
        if sslmode in ("verify-ca", "verify-full") and not _text(settings.get("postgres_ca_file")):
            out.append(
                _problem(
                    "cmx_postgres_ca_file",
                    f"sslmode={sslmode} needs the CA that signed the server's certificate",
                    "the path of a PEM CA bundle on the control machine (RDS: global-bundle.pem)",
                )
            )
        _check_ca(settings, "postgres", out)
    if mode(settings, "pgbouncer") == "external" and not _text(settings.get("pgbouncer_host")):
        out.append(
            _problem(
                "cmx_pgbouncer_host",
                "external pooler without an endpoint",
                "the pooler's host name (RDS Proxy endpoint, Supabase pooler host)",
            )
        )
    if mode(settings, "redis") == "external":
        host = _text(settings.get("redis_host"))
        if not host:
            out.append(
                _problem(
                    "cmx_redis_host",
                    "external Redis without an endpoint",
                    "the server's host name (ElastiCache: the primary endpoint)",
                )
            )
        tls = settings.get("redis_tls")
        if (
            strict
            and host
            and not is_loopback(host)
            and tls is not None
            and _text(tls) != ""
            and not _bool(tls)
        ):
            out.append(
                _problem(
                    "cmx_redis_tls",
                    f"plaintext Redis to {host}, which is not a loopback address, in {environment}",
                    "true (ElastiCache: in-transit encryption on)",
                )
            )
        if _bool(settings.get("redis_commander_enabled")):
            out.append(
                _problem(
                    "cmx_redis_commander_enabled",
                    "Redis Commander only connects to the stack's own Redis container",
                    "false when cmx_redis_mode is external",
                )
            )
        _check_ca(settings, "redis", out)
    if mode(settings, "s3") == "external":
        endpoint = _text(settings.get("s3_endpoint"))
        parts = urllib.parse.urlsplit(endpoint)
        addressing = _text(settings.get("s3_addressing")) or "path"
        if not endpoint:
            out.append(
                _problem(
                    "cmx_s3_endpoint",
                    "external S3 without an endpoint",
                    "https://s3.<region>.amazonaws.com or the provider's URL",
                )
            )
        elif parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            out.append(
                _problem(
                    "cmx_s3_endpoint",
                    f"{endpoint!r} is not an http(s)://host[:port] URL",
                    "https://s3.<region>.amazonaws.com or the provider's URL",
                )
            )
        elif strict and parts.scheme == "http" and not is_loopback(parts.hostname):
            out.append(
                _problem(
                    "cmx_s3_endpoint",
                    f"plaintext http to {parts.hostname}, which is not a loopback address, in {environment}",
                    "an https:// endpoint",
                )
            )
        if addressing not in ADDRESSINGS:
            out.append(_problem("cmx_s3_addressing", f"unknown addressing {addressing!r}", "path or virtual"))
        _check_ca(settings, "s3", out)
    return out
