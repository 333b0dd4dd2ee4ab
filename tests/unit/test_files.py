"""cmx_files logic: writes only what differs, atomically, validates before replacing."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.files import ValidationError, sync


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_run_creates_then_second_run_changes_nothing(tmp_path):
    dirs = [
        {"path": str(tmp_path / "stack"), "mode": "0755"},
        {"path": str(tmp_path / "stack/secrets"), "mode": "0700"},
    ]
    files = [
        {"path": str(tmp_path / "stack/.env"), "content": "A=1\n", "mode": "0600"},
        {"path": str(tmp_path / "stack/secrets/pw"), "content": "s3cret", "mode": "0644"},
    ]
    first = sync(dirs, files)
    assert first.any_changed and len(first.changed) == 4
    assert (tmp_path / "stack/.env").read_text() == "A=1\n"
    assert mode(tmp_path / "stack/.env") == 0o600
    assert mode(tmp_path / "stack/secrets") == 0o700
    second = sync(dirs, files)
    assert not second.any_changed
    assert len(second.unchanged) == 4


def test_check_mode_reports_without_writing(tmp_path):
    target = tmp_path / "f"
    result = sync([], [{"path": str(target), "content": "x", "mode": "0644"}], check_mode=True)
    assert result.changed == [str(target)]
    assert not target.exists()


def test_changed_content_is_a_new_inode_and_mode_only_change_is_in_place(tmp_path):
    target = tmp_path / "f"
    sync([], [{"path": str(target), "content": "one", "mode": "0644"}])
    inode = os.stat(target).st_ino
    sync([], [{"path": str(target), "content": "one", "mode": "0600"}])
    assert os.stat(target).st_ino == inode and mode(target) == 0o600
    result = sync([], [{"path": str(target), "content": "two", "mode": "0600"}])
    assert result.changed == [str(target)]
    assert target.read_text() == "two"
    assert os.stat(target).st_ino != inode  # atomic rename: readers never see half a file


def test_only_if_missing_keeps_existing_content(tmp_path):
    target = tmp_path / "userlist"
    target.write_text("filled")
    os.chmod(target, 0o644)
    result = sync([], [{"path": str(target), "content": "", "mode": "0644", "only_if_missing": True}])
    assert not result.any_changed
    assert target.read_text() == "filled"


def test_validate_refusal_leaves_the_old_file_and_no_temp_files(tmp_path):
    target = tmp_path / "compose.yml"
    target.write_text("old")
    with pytest.raises(ValidationError, match=r"compose.yml: `false %s` refused"):
        sync([], [{"path": str(target), "content": "new", "mode": "0644", "validate": "false %s"}])
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compose.yml"]


def test_validate_sees_the_candidate_content(tmp_path):
    target = tmp_path / "x.txt"
    sync([], [{"path": str(target), "content": "needle", "mode": "0644", "validate": "grep -q needle %s"}])
    assert target.read_text() == "needle"


def test_owner_and_group_are_applied_and_compared(tmp_path):
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    target = tmp_path / "owned"
    first = sync([], [{"path": str(target), "content": "x", "mode": "0600", "owner": me, "group": group}])
    assert first.any_changed
    again = sync([], [{"path": str(target), "content": "x", "mode": "0600", "owner": str(os.getuid())}])
    assert not again.any_changed


def _run_cmx_files(params: dict) -> dict:
    from ansible_collections.cleanmatex.infra.plugins.modules import cmx_files
    from ansible_collections.cleanmatex.infra.tests.module_main import run_main

    return run_main(cmx_files, params)


def test_secret_files_are_written_first_and_their_content_is_never_returned(tmp_path):
    secret, plain = tmp_path / "secret", tmp_path / "plain.conf"
    params = {
        "secret_files": [{"path": str(secret), "content": "s3cr3t-value-42", "mode": "0600"}],
        # The plain file's validation reads the secret: it must already be there.
        "files": [{"path": str(plain), "content": "x\n", "mode": "0644", "validate": f"test -s {secret}"}],
    }
    result = _run_cmx_files(params)
    assert not result.get("failed"), result
    assert secret.read_text() == "s3cr3t-value-42" and mode(secret) == 0o600
    assert result["changed_paths"] == [str(secret), str(plain)]
    assert "s3cr3t-value-42" not in json.dumps(result)
    assert result["invocation"]["module_args"]["files"][0]["content"] == "x\n"
    again = _run_cmx_files(params)
    assert again["changed"] is False and again["unchanged_paths"] == [str(secret), str(plain)]


def test_the_calls_owner_applies_to_entries_without_their_own(tmp_path):
    import grp
    import pwd

    from ansible_collections.cleanmatex.infra.plugins.module_utils.files import task_result

    me = pwd.getpwuid(os.getuid()).pw_name
    my_group = grp.getgrgid(os.getgid()).gr_name
    params = {
        "directories": [{"path": str(tmp_path / "d"), "mode": "0750"}],
        "files": [{"path": str(tmp_path / "d" / "f"), "content": "x", "mode": "0644"}],
        "secret_files": [],
        "owner": me,
        "group": my_group,
    }
    assert task_result(params, check_mode=False)["changed"] is True
    assert task_result(params, check_mode=False)["changed"] is False  # same owner: nothing to change
    unknown = dict(params, owner="cmx-no-such-user-anywhere")
    assert task_result(unknown, check_mode=False) == {
        "failed": True,
        "msg": "unknown owner or group: \"getpwnam(): name not found: 'cmx-no-such-user-anywhere'\"",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_rewrite_keeps_the_replaced_files_owner(tmp_path):
    from ansible_collections.cleanmatex.infra.plugins.module_utils.files import SyncResult, write_file

    path = tmp_path / "userlist.txt"
    path.write_text("old\n")
    os.chown(path, 65534, 65534)  # e.g. the deploy account, given it by an earlier call
    write_file(str(path), "new\n", "0600", False, SyncResult())
    assert path.read_text() == "new\n"
    assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)
    write_file(str(path), "newer\n", "0600", False, SyncResult(), owner="0", group="0")
    assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
