# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Supabase local around the pinned CLI: read `supabase status`, check before `supabase start`, bound it.

Status output (CLI 2.117.0, the Go CLI under apps/cli-go/ of github.com/supabase/cli):
``supabase status -o json`` prints one flat JSON object, ``-o env`` KEY="value" lines. The keys are the
defaults of ``CustomName`` in apps/cli-go/internal/status/status.go (API_URL, REST_URL, GRAPHQL_URL, DB_URL,
STUDIO_URL, MAILPIT_URL, INBUCKET_URL, PUBLISHABLE_KEY, SECRET_KEY, JWT_SECRET, ANON_KEY,
SERVICE_ROLE_KEY, S3_PROTOCOL_*...); a key is left out when its service is not running (excluded or
disabled). It exits 1 when the database container is not there ("failed to inspect container health: ...
No such container: supabase_db_<project_id>"), and prints "Stopped services: [...]" on stderr for the
containers of the project that are not running.

Start: ``supabase start`` pulls each image it does not have, trying the registry (public.ecr.aws, or
SUPABASE_INTERNAL_IMAGE_REGISTRY), ghcr.io and Docker Hub three times each; with none reachable it gave up
after 76 s here with one ~2,000-character line per image. `check_start` finds the same failure in about a
second: the images ``supabase services -o json`` lists for the enabled services, looked up under the name
the CLI uses (``GetRegistryImageUrl`` in apps/cli-go/internal/utils/docker.go), and a probe of the
registries; `summarize_start_failure` turns the CLI's own errors into one line per cause.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

# The names `supabase start --help` (2.117.0) accepts for --exclude.
EXCLUDE_NAMES = (
    "gotrue",
    "realtime",
    "storage-api",
    "imgproxy",
    "kong",
    "mailpit",
    "postgrest",
    "postgres-meta",
    "studio",
    "edge-runtime",
    "logflare",
    "vector",
    "supavisor",
)

# The images `supabase services` lists -> (its --exclude name, the config.toml switch that turns it off).
# supabase/postgres has neither: it always starts.
SERVICE_IMAGES = {
    "supabase/postgres": (None, None),
    "supabase/gotrue": ("gotrue", "auth"),
    "postgrest/postgrest": ("postgrest", "api"),
    "supabase/realtime": ("realtime", "realtime"),
    "supabase/storage-api": ("storage-api", "storage"),
    "supabase/edge-runtime": ("edge-runtime", "edge_runtime"),
    "supabase/studio": ("studio", "studio"),
    "supabase/postgres-meta": ("postgres-meta", "studio"),
    "supabase/logflare": ("logflare", "analytics"),
    "supabase/supavisor": ("supavisor", "db.pooler"),
}

# config.toml port -> (label, --exclude name or None, config switch or None, inventory variable)
CONFIG_PORTS = (
    ("api.port", "API (Kong)", "kong", "api", "cmx_supabase_api_port"),
    ("db.port", "database", None, None, "cmx_supabase_db_port"),
    ("studio.port", "Studio", "studio", "studio", "cmx_supabase_studio_port"),
    ("inbucket.port", "Mailpit", "mailpit", "inbucket", "cmx_supabase_local_smtp_port"),
    ("analytics.port", "analytics (Logflare)", "logflare", "analytics", "cmx_supabase_analytics_port"),
    ("db.pooler.port", "pooler (Supavisor)", "supavisor", "db.pooler", None),
)

# The sections the CLI enables when config.toml does not say (supabase init's defaults).
_DEFAULT_ENABLED = {
    "api": True,
    "studio": True,
    "inbucket": True,
    "auth": True,
    "storage": True,
    "realtime": True,
    "edge_runtime": True,
    "analytics": True,
    "db.pooler": False,
}

DEFAULT_REGISTRY = "public.ecr.aws"
REGISTRY_HOSTS = {"docker.io": "registry-1.docker.io"}

# What the apps' .env takes from the status output: (app variable, status keys in order of preference).
APP_ENV_KEYS = (
    ("NEXT_PUBLIC_SUPABASE_URL", ("API_URL",)),
    ("NEXT_PUBLIC_SUPABASE_ANON_KEY", ("ANON_KEY", "PUBLISHABLE_KEY")),
    ("SUPABASE_SERVICE_ROLE_KEY", ("SERVICE_ROLE_KEY", "SECRET_KEY")),
)


class SupabaseError(Exception):
    """A problem with the Supabase CLI or its output, with the text to show."""


# --------------------------------------------------------------------------- status output


def parse_status_json(text: str) -> dict[str, str]:
    """The flat object ``supabase status -o json`` prints -> {KEY: value} (strings only)."""
    start = text.find("{")
    if start < 0:
        raise SupabaseError(f"supabase status printed no JSON object: {text.strip()[:200]!r}")
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError as exc:
        raise SupabaseError(f"supabase status printed JSON that does not parse: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SupabaseError("supabase status -o json is not a flat object of strings")
    return dict(data)


def parse_status_env(text: str) -> dict[str, str]:
    """The KEY="value" lines of ``supabase status -o env`` (godotenv.Marshal: double quotes, \\-escapes)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(
                r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value[1:-1]
            )
        values[key] = value
    return values


def parse_stopped(stderr: str) -> list[str]:
    """Container names from the "Stopped services: [a b]" line status prints on stderr."""
    match = re.search(r"Stopped services:\s*\[([^\]]*)\]", stderr or "")
    return match.group(1).split() if match else []


def app_env(values: dict[str, str]) -> dict[str, str]:
    """The three app variables from the status values; raise naming what is missing."""
    env, missing = {}, []
    for name, keys in APP_ENV_KEYS:
        found = next((values[k] for k in keys if values.get(k)), None)
        if found is None:
            missing.append(f"{name} (status key {' or '.join(keys)})")
        else:
            env[name] = found
    if missing:
        raise SupabaseError(
            "supabase status does not show "
            + ", ".join(missing)
            + ": the API gateway (kong) or Auth (gotrue) is excluded or not running"
        )
    return env


# --------------------------------------------------------------------------- config and images


def load_config(path: str) -> dict:
    """config.toml as a dict ({} when the file is missing)."""
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - older targets: no port/enabled data, the CLI still checks
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SupabaseError(f"cannot read {path}: {exc}") from exc


def _lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def section_enabled(config: dict, section: str | None) -> bool:
    if section is None:
        return True
    value = _lookup(config, section + ".enabled")
    return _DEFAULT_ENABLED.get(section, True) if value is None else bool(value)


def registry() -> str:
    return (os.environ.get("SUPABASE_INTERNAL_IMAGE_REGISTRY") or DEFAULT_REGISTRY).lower()


def registry_image_url(image: str, reg: str | None = None) -> str:
    """The name the CLI runs an image under (GetRegistryImageUrl, apps/cli-go/internal/utils/docker.go)."""
    reg = registry() if reg is None else reg
    if reg == "docker.io":
        return image
    return f"{reg}/supabase/{image.split('/')[-1]}"


def parse_services(text: str) -> list[tuple[str, str]]:
    """``supabase services -o json`` -> [(image, local tag)]."""
    try:
        data = json.loads(text[text.find("[") :] if "[" in text else text)
    except ValueError as exc:
        raise SupabaseError(
            f"supabase services -o json printed something else: {text.strip()[:200]!r}"
        ) from exc
    if isinstance(data, dict):
        data = data.get("services", [])
    return [
        (str(s["name"]), str(s["local"]))
        for s in data
        if isinstance(s, dict) and s.get("name") and s.get("local")
    ]


def needed_images(
    services: list[tuple[str, str]], config: dict, exclude: list[str], reg: str | None = None
) -> list[str]:
    """The images `supabase start -x <exclude>` will run, under the names the CLI looks for."""
    needed = []
    for image, tag in services:
        exclude_name, section = SERVICE_IMAGES.get(image, (None, None))
        if exclude_name in exclude or not section_enabled(config, section):
            continue
        needed.append(registry_image_url(f"{image}:{tag}", reg))
    return needed


def port_specs(config: dict, exclude: list[str]) -> list[dict]:
    """{service, port, variable} for each port the started services publish (for ports.check_ports)."""
    specs = []
    for key, label, exclude_name, section, variable in CONFIG_PORTS:
        port = _lookup(config, key)
        if not isinstance(port, int) or exclude_name in exclude or not section_enabled(config, section):
            continue
        specs.append(
            {
                "service": f"Supabase {label}",
                "port": port,
                "variable": variable or f"[{key.rsplit('.', 1)[0]}] port in config.toml",
            }
        )
    return specs


# --------------------------------------------------------------------------- docker and registries


def run(argv, timeout: float = 30, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False
    )


def docker_server_version(docker: str = "docker") -> str:
    try:
        done = run([docker, "version", "--format", "{{.Server.Version}}"], timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SupabaseError(f"Supabase needs the Docker engine, which does not answer: {exc}") from exc
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        raise SupabaseError(
            "Supabase needs the Docker engine, which does not answer: "
            + (done.stderr.strip().splitlines() or ["docker version failed"])[-1]
        )
    return version


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0].split("-")[0])[:3])


def missing_images(images: list[str], docker: str = "docker") -> list[str]:
    if not images:
        return []
    done = run([docker, "image", "inspect", "--format", "{{.Id}}", *images], timeout=60)
    if done.returncode == 0:
        return []
    # one call per image to know which (the multi-image call fails as a whole)
    return [
        img
        for img in images
        if run([docker, "image", "inspect", "--format", "{{.Id}}", img], timeout=30).returncode
    ]


def probe_registry(host: str, timeout: float = 3.0) -> str | None:
    """None when https://<host>/v2/ answers with any HTTP status, else why not."""
    try:
        with urllib.request.urlopen(f"https://{host}/v2/", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # 401 is the normal answer of a registry
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            return f"DNS lookup failed ({reason.strerror})"
        if isinstance(reason, OSError) and getattr(reason, "strerror", None):
            return str(reason.strerror)
        return str(reason)
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def registries_to_try(reg: str | None = None) -> list[str]:
    """The registries the CLI tries in order: its registry, then ghcr.io, then Docker Hub."""
    reg = registry() if reg is None else reg
    hosts = []
    for r in (reg, "ghcr.io", "docker.io"):
        host = REGISTRY_HOSTS.get(r, r)
        if host not in hosts:
            hosts.append(host)
    return hosts


def probe_registries(hosts: list[str], timeout: float = 3.0) -> dict[str, str | None]:
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return dict(zip(hosts, pool.map(lambda h: probe_registry(h, timeout), hosts), strict=True))


# --------------------------------------------------------------------------- the CLI's failures

_PULL_RE = re.compile(r"failed to pull docker image from all registries: (\S+?) attempt \d+: (.*)")
_DAEMON_RE = re.compile(r"Error response from daemon: (.*)")


def _reason(text: str) -> str:
    """The daemon's reason, with the URL and resolver address cut: 'lookup ghcr.io: no such host'."""
    m = _DAEMON_RE.search(text)
    reason = (m.group(1) if m else text).split("; ")[0].strip()
    m = re.search(r"dial tcp: lookup (\S+) on \S+: (.*)", reason)
    if m:
        return f"DNS lookup of {m.group(1)} failed ({m.group(2)})"
    m = re.search(r"dial tcp (\S+): (.*)", reason)
    if m:
        return f"cannot connect to {m.group(1)} ({m.group(2)})"
    return reason[:200]


def summarize_start_failure(stderr: str, stdout: str = "") -> str:
    """The CLI's errors, a sentence per cause (image pulls, ports, Docker API version, else its last line)."""
    text = (stderr or "") + "\n" + (stdout or "")
    pulls: dict[str, str] = {}
    for line in text.splitlines():
        m = _PULL_RE.search(line)
        if m:
            image = m.group(1).split("/")[-1]
            pulls.setdefault(image, _reason(m.group(2)))
    parts = []
    if pulls:
        reasons = sorted(set(pulls.values()))
        parts.append(
            f"{len(pulls)} image(s) could not be pulled from any registry ({', '.join(sorted(pulls))}): "
            + "; ".join(reasons)
        )
    m = re.search(
        r"(?:Bind for|listen tcp) (\S+?):(\d+)(?: failed)?:? .*"
        r"(?:port is already allocated|address already in use)",
        text,
    )
    if m:
        parts.append(
            f"port {m.group(2)} on {m.group(1)} is already taken (another program or an earlier Supabase)"
        )
    m = re.search(r"client version (\S+) is too new\. Maximum supported API version is (\S+)", text)
    if m:
        parts.append(
            f"the Docker engine is too old: it speaks API {m.group(2)}, the Supabase CLI needs {m.group(1)}"
        )
    if not parts:
        lines = [
            ln.strip()
            for ln in text.splitlines()
            if ln.strip() and not ln.startswith(("Retrying after", "Try rerunning the command"))
        ]
        parts.append(lines[-1][:400] if lines else "no error text")
    return "; ".join(parts)


# --------------------------------------------------------------------------- running the CLI


def cli_argv(cli: str, verb: list[str], workdir: str) -> list[str]:
    return [cli, *verb, "--workdir", workdir]


def run_bounded(argv: list[str], timeout: float, env=None, cwd=None) -> tuple[int | None, str, str, float]:
    """Run argv in its own process group; on timeout kill the group (the npm wrapper and the Go binary).

    Returns (rc or None on timeout, stdout, stderr, seconds).
    """
    began = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, time.monotonic() - began
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = proc.communicate(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        else:  # pragma: no cover
            out, err = "", ""
        return None, out or "", err or "", time.monotonic() - began


def check_start(
    cli: str,
    workdir: str,
    exclude: list[str],
    docker: str = "docker",
    docker_min_version: str = "20.10",
    check_images: bool = True,
    probe_timeout: float = 3.0,
    port_checker=None,
) -> dict:
    """What can be known before `supabase start`: Docker, ports, images and registries.

    Returns {"problems": [sentences], "missing_images": [...], "registries": {host: None|reason},
    "docker_version": str, "images": [...]}; problems empty means start may go ahead.
    """
    result = {"problems": [], "missing_images": [], "registries": {}, "docker_version": "", "images": []}
    version = docker_server_version(docker)
    result["docker_version"] = version
    if version_tuple(version) < version_tuple(docker_min_version):
        result["problems"].append(
            f"the Docker engine is too old: {version}, the Supabase CLI is used here with "
            f"{docker_min_version} or newer"
        )
    config = load_config(os.path.join(workdir, "supabase", "config.toml"))
    if port_checker is not None:
        result["problems"].extend(port_checker(port_specs(config, exclude)))
    if check_images:
        done = run(cli_argv(cli, ["services", "-o", "json"], workdir), timeout=60)
        if done.returncode != 0:
            raise SupabaseError(
                "supabase services failed: "
                + " ".join(shlex.quote(a) for a in cli_argv(cli, ["services", "-o", "json"], workdir))
                + ": "
                + (done.stderr.strip() or done.stdout.strip())[-400:]
            )
        images = needed_images(parse_services(done.stdout), config, exclude)
        result["images"] = images
        missing = missing_images(images, docker)
        result["missing_images"] = missing
        if missing:
            hosts = registries_to_try()
            reachable = probe_registries(hosts, probe_timeout)
            result["registries"] = reachable
            if all(reachable.values()):
                by_reason: dict[str, list[str]] = {}
                for host, why_not in reachable.items():
                    by_reason.setdefault(str(why_not), []).append(host)
                why = "; ".join(f"{', '.join(h)}: {r}" for r, h in by_reason.items())
                result["problems"].append(
                    f"{len(missing)} image(s) are not on this host and no registry answers, so they "
                    f"cannot be pulled: {', '.join(missing)} ({why})"
                )
    return result


def start_failure_message(problems: list[str], seconds: float | None = None, ran_cli: bool = False) -> str:
    head = "Supabase did not start"
    if seconds is not None:
        head += f" (after {seconds:.0f} s)"
    where = "supabase start gave up" if ran_cli else "checked before running supabase start"
    return (
        f"{head}, {where}: "
        + "; ".join(problems)
        + ". Nothing of the CleanMateX stack was changed. Fix: make a registry reachable (or set "
        "SUPABASE_INTERNAL_IMAGE_REGISTRY to a mirror), load the images under these names (docker load), "
        "free the ports, or set cmx_supabase_enabled: false for this environment."
    )
