"""CIS Docker Benchmark, container runtime (section 5) and images (section 4): every rule that can be
checked over `docker inspect` of the running stack, one assertion each, numbered as the reference script
(docker/docker-bench-security) numbers them. Rules that cannot hold here are waived, with the reason, in
docs/security.md ("CIS Docker Benchmark")."""

from __future__ import annotations

import json

import pytest
from conftest import docker, inspect, stack_containers


@pytest.fixture(scope="module")
def containers() -> dict[str, dict]:
    names = stack_containers()
    assert len(names) >= 5, names  # postgres, pgbouncer, redis, storage, health (and the GUI when enabled)
    return {name: inspect(name) for name in names}


def _each(containers, check):
    """Names of the containers for which check(inspect) is false."""
    return sorted(name for name, info in containers.items() if not check(info))


def test_4_1_every_container_runs_as_a_non_root_user(containers):
    assert _each(containers, lambda i: i["Config"]["User"] not in ("", "0", "root", "0:0")) == []


def test_4_6_and_5_27_every_container_has_a_health_check(containers):
    assert _each(containers, lambda i: bool((i["Config"].get("Healthcheck") or {}).get("Test"))) == []
    assert _each(containers, lambda i: i["State"]["Health"]["Status"] == "healthy") == []


def test_4_6_every_image_we_build_has_its_own_health_check(containers):
    for name, info in containers.items():
        image = json.loads(docker("image", "inspect", info["Image"]).stdout)[0]["Config"]
        if "org.cleanmatex.inputs-hash" in (image.get("Labels") or {}):  # built by the images role
            assert (image.get("Healthcheck") or {}).get("Test"), f"{name}: image {info['Config']['Image']}"


def test_5_4_all_capabilities_are_dropped_and_none_added(containers):
    assert _each(containers, lambda i: i["HostConfig"]["CapDrop"] == ["ALL"]) == []
    assert _each(containers, lambda i: not i["HostConfig"]["CapAdd"]) == []


def test_5_5_no_privileged_container(containers):
    assert _each(containers, lambda i: i["HostConfig"]["Privileged"] is False) == []


def test_5_6_no_sensitive_host_directory_is_mounted(containers):
    sensitive = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/var/run/docker.sock")
    for name, info in containers.items():
        sources = [mount["Source"] for mount in info["Mounts"] if mount["Type"] == "bind"]
        assert [source for source in sources if source.rstrip("/") in sensitive or source == "/"] == [], name


def test_5_10_5_16_5_17_5_21_5_31_no_host_namespaces(containers):
    for key in ("NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode"):
        assert _each(containers, lambda i, key=key: i["HostConfig"].get(key) != "host") == [], key


def test_5_11_to_5_13_memory_cpu_and_read_only_root(containers):
    assert _each(containers, lambda i: i["HostConfig"]["Memory"] > 0) == []
    assert _each(containers, lambda i: i["HostConfig"]["CpuShares"] > 0) == []
    assert _each(containers, lambda i: i["HostConfig"]["ReadonlyRootfs"] is True) == []


def test_5_14_ports_bind_to_the_configured_address_only(containers, inv):
    for name, info in containers.items():
        for bindings in (info["HostConfig"]["PortBindings"] or {}).values():
            assert {binding["HostIp"] for binding in bindings} == {inv["cmx_bind_address"]}, name


def test_5_20_no_shared_mount_propagation(containers):
    for name, info in containers.items():
        assert [m for m in info["Mounts"] if m.get("Propagation") in ("shared", "rshared")] == [], name


def test_5_26_no_new_privileges(containers):
    assert (
        _each(containers, lambda i: "no-new-privileges:true" in (i["HostConfig"]["SecurityOpt"] or [])) == []
    )


def test_5_29_pids_limit(containers):
    assert _each(containers, lambda i: (i["HostConfig"]["PidsLimit"] or 0) > 0) == []


def test_5_30_not_on_the_default_bridge(containers):
    assert _each(containers, lambda i: "bridge" not in i["NetworkSettings"]["Networks"]) == []


def test_5_32_no_docker_socket_mounted(containers):
    for name, info in containers.items():
        assert [m for m in info["Mounts"] if m["Source"].endswith("docker.sock")] == [], name
