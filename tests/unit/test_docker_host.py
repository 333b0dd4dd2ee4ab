"""Docker host probe: OS family from os-release, PID 1, and a missing docker CLI reported, not raised."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils import docker_host


def test_os_family_recognises_debian_and_derivatives(tmp_path):
    (tmp_path / "debian").write_text('ID=debian\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    (tmp_path / "mint").write_text('ID=linuxmint\nID_LIKE="ubuntu debian"\n')
    (tmp_path / "fedora").write_text("ID=fedora\n")
    assert docker_host.os_family(docker_host.read_os_release(str(tmp_path / "debian"))) == "Debian"
    assert docker_host.os_family(docker_host.read_os_release(str(tmp_path / "mint"))) == "Debian"
    assert docker_host.os_family(docker_host.read_os_release(str(tmp_path / "fedora"))) == "fedora"
    assert docker_host.read_os_release(str(tmp_path / "missing")) == {}


def test_pid1_check_reads_comm(tmp_path):
    (tmp_path / "comm").write_text("systemd\n")
    assert docker_host.pid1_is_systemd(str(tmp_path / "comm"))
    (tmp_path / "comm").write_text("bash\n")
    assert not docker_host.pid1_is_systemd(str(tmp_path / "comm"))


def test_probe_reports_a_missing_docker_cli(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = docker_host.probe(timeout=5)
    assert result["engine_ok"] is False and result["compose_ok"] is False
    assert "command not found" in result["engine_error"]
    assert result["docker_cli"] == "" and result["build_tools"] == {"mmdebstrap": ""}
