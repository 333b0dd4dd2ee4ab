"""The Debian mirror read from apt sources (module_utils/apt_sources.py): one-line and deb822 files."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils import apt_sources


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_deb822_debian_mirror(tmp_path):
    write(
        tmp_path / "sources.list.d" / "debian.sources",
        "Types: deb\n"
        "# a comment\n"
        "URIs: http://mirror.example.invalid/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example.invalid/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n",
    )
    uri, source = apt_sources.find_mirror(apt_sources.read_sources(str(tmp_path)))
    assert uri == "http://mirror.example.invalid/debian"
    assert source.endswith("debian.sources")


def test_security_only_source_is_not_the_archive(tmp_path):
    write(
        tmp_path / "sources.list.d" / "a.sources",
        "Types: deb\nURIs: http://security.example.invalid/debian-security\n"
        "Suites: trixie-security\nComponents: main\n",
    )
    write(
        tmp_path / "sources.list",
        "deb [arch=amd64 signed-by=/k.gpg] https://ftp.example.invalid/debian trixie main\n",
    )
    assert (
        apt_sources.find_mirror(apt_sources.read_sources(str(tmp_path)))[0]
        == "https://ftp.example.invalid/debian"
    )


def test_one_line_format_skips_comments_deb_src_and_disabled(tmp_path):
    write(
        tmp_path / "sources.list",
        "# deb http://old.example.invalid/debian bookworm main\n"
        "deb-src http://src.example.invalid/debian bookworm main\n"
        "deb cdrom:[Debian]/ bookworm main\n"
        "deb http://ok.example.invalid/debian bookworm main contrib # trailing\n",
    )
    write(
        tmp_path / "sources.list.d" / "0off.sources",
        "Enabled: no\nTypes: deb\nURIs: http://off.example.invalid/debian\n"
        "Suites: bookworm\nComponents: main\n",
    )
    assert (
        apt_sources.find_mirror(apt_sources.read_sources(str(tmp_path)))[0]
        == "http://ok.example.invalid/debian"
    )


def test_ubuntu_host_without_debian_source(tmp_path):
    write(
        tmp_path / "sources.list.d" / "ubuntu.sources",
        "Types: deb\nURIs: http://archive.example.invalid/ubuntu\n"
        "Suites: noble noble-updates\nComponents: main\n",
    )
    assert apt_sources.find_mirror(apt_sources.read_sources(str(tmp_path))) == ("", "")


def test_fallback_on_debian_path(tmp_path):
    write(tmp_path / "sources.list.d" / "x.list", "deb http://m.example.invalid/debian custom-suite main\n")
    assert (
        apt_sources.find_mirror(apt_sources.read_sources(str(tmp_path)))[0]
        == "http://m.example.invalid/debian"
    )


def test_no_apt_config(tmp_path):
    assert apt_sources.read_sources(str(tmp_path / "missing")) == []
    assert apt_sources.find_mirror([]) == ("", "")


def test_deb822_continuation_lines():
    entries = apt_sources.parse_deb822(
        "Types: deb\nURIs: http://a.invalid/debian\n http://b.invalid/debian\nSuites: trixie\n"
    )
    assert entries[0]["uris"] == ["http://a.invalid/debian", "http://b.invalid/debian"]
