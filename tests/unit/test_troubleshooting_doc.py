"""Every error message the project can print has an entry in docs/troubleshooting.md.

The messages are collected from the code, not listed by hand:

- Ansible: every ``ansible.builtin.fail`` task (its ``msg``) and ``ansible.builtin.assert`` task (its
  ``fail_msg``) in roles/**/tasks/*.yml and playbooks/*.yml. The task's ``name`` must appear verbatim in the
  doc (a ``###`` heading), and so must the message's key text (below).
- Python (plugins/{modules,action,module_utils,filter,lookup}/*.py, the Python scripts in bin/ and
  roles/*/files/*.py): the message given to ``fail_json(msg=...)``, to ``raise <Exception>(...)`` (the first
  argument that holds text), to ``sys.exit("...")``, written to stderr (``sys.stderr.write(...)``,
  ``print(..., file=sys.stderr)``), set as a failed result's message (``result["msg"] = ...``,
  ``result.msg = ...``, ``{"failed": True, "msg": ...}``), and the problem text of an env validation finding
  (``report.error(variable, problem, ...)``). A message built in a local variable is followed to the strings
  assigned to it in the same function.
- Shell (bootstrap.sh, tests/run.sh, the shell scripts in bin/, the image entrypoints in
  roles/*/files/*/*.sh): ``echo "..." >&2`` lines, and the entrypoints' ``die "..."`` / ``log "ERROR: ..."``.

The key text of a message is its first literal part (the text between placeholders: ``{{ }}`` / ``{% %}`` in
Jinja, ``{...}`` in f-strings and ``.format``, ``%s`` in ``%`` formatting, ``$var`` / ``$(...)`` in shell)
that has at least 3 words and 15 characters, whitespace-normalised and cut to its first 12 words. A message
with no such part (a pure ``str(exc)`` passthrough, ``f"cmx-env: {exc}"``) is skipped: the message it
passes on is collected where it is raised. The doc must contain the key, whitespace-normalised and
case-sensitive: ``Docker is not ready on <host>: ...`` holds the key ``Docker is not ready on``.

When this test fails it lists each missing message with its file:line: add an entry for it (the message as
printed, placeholders like ``<port>`` for its variable parts, the cause, the fix), or, only for an error no
user can trigger, add it to EXCLUDED below with a comment saying why.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"

MIN_WORDS = 3
MIN_CHARS = 15
MAX_WORDS = 12

# (file relative to the repository root, key text): errors a user cannot trigger, so they need no entry.
# Keep this small; each entry says why.
EXCLUDED = {
    # Caught inside container_states: the check falls back to `docker inspect`; never printed.
    ("plugins/module_utils/stack_state.py", "Docker API answered"),
    # The schema tables of env_schema.py are code: a wrong default template there fails the unit tests first.
    ("plugins/module_utils/env_schema.py", "unknown format spec"),
    ("plugins/module_utils/env_schema.py", "braces in a default template literal"),
    # Only names that already match the backup folder pattern are sorted.
    ("plugins/module_utils/backup.py", "not a backup folder name"),
    # The modules' argument spec allows only the known probe types; libpq never returns another poll state.
    ("plugins/module_utils/probes.py", "unknown probe type"),
    ("plugins/module_utils/probes.py", "unexpected poll state"),
    # quote_for targets are written in the collection's own templates, never taken from the inventory.
    ("plugins/module_utils/quoting.py", "unknown quoting target"),
}


@dataclass(frozen=True)
class Message:
    key: str  # the text the doc must contain
    where: str  # file:line
    origin: str  # what produced it: "fail task", "raise BackupError", "stderr", ...
    task: str | None = None  # the Ansible task's name (must be in the doc too)


def normalise(text: str) -> str:
    return " ".join(text.split())


def key_of(segments: list[str]) -> str | None:
    """The first literal segment long enough to identify a message, cut to MAX_WORDS words."""
    for segment in segments:
        words = normalise(segment).split()
        if len(words) >= MIN_WORDS and len(" ".join(words)) >= MIN_CHARS:
            return " ".join(words[:MAX_WORDS])
    return None


# --- Ansible ------------------------------------------------------------------------------------------------

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_FAIL_MODULES = {"ansible.builtin.fail", "ansible.legacy.fail", "fail"}
_ASSERT_MODULES = {"ansible.builtin.assert", "ansible.legacy.assert", "assert"}


class _LineLoader(yaml.SafeLoader):
    """safe_load that also records each mapping's line (as the key __line__)."""

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


def _tasks(items):
    """Every task in a task list, plays and blocks (block/rescue/always) included."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        yield item
        for section in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            if isinstance(item.get(section), list):
                yield from _tasks(item[section])


def collect_ansible(path: Path, root: Path = ROOT) -> list[Message]:
    found = []
    data = yaml.load(path.read_text(), Loader=_LineLoader)  # a SafeLoader subclass
    for task in _tasks(data if isinstance(data, list) else []):
        text = origin = None
        for module in _FAIL_MODULES:
            if module in task:
                text, origin = (task[module] or {}).get("msg"), "fail task"
        for module in _ASSERT_MODULES:
            if module in task:
                text, origin = (task[module] or {}).get("fail_msg"), "assert task"
        if origin is None:
            continue
        where = f"{path.relative_to(root)}:{task['__line__']}"
        key = key_of(_JINJA.split(text)) if isinstance(text, str) else None
        found.append(Message(key or "", where, origin, str(task.get("name", ""))))
    return found


# --- Python -------------------------------------------------------------------------------------------------

_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")


def _segments(node: ast.AST, scope: ast.AST | None, depth: int = 0) -> list[list[str]]:
    """The literal segments of the strings an expression can be (one list per alternative);
    a placeholder splits a segment."""
    if depth > 5:
        return [[]]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [[node.value]]
    if isinstance(node, ast.JoinedStr):
        segments, current = [], ""
        for value in node.values:
            if isinstance(value, ast.Constant):
                current += value.value
            else:
                segments.append(current)
                current = ""
        return [[*segments, current]]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        lefts, rights = _segments(node.left, scope, depth + 1), _segments(node.right, scope, depth + 1)
        return [left + right for left in lefts for right in rights]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return [
            [piece for segment in option for piece in _PERCENT.split(segment)]
            for option in _segments(node.left, scope, depth + 1)
        ]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return [
            [piece for segment in option for piece in _FORMAT_FIELD.split(segment)]
            for option in _segments(node.func.value, scope, depth + 1)
        ]
    if isinstance(node, ast.IfExp):
        return _segments(node.body, scope, depth + 1) + _segments(node.orelse, scope, depth + 1)
    if isinstance(node, ast.Name) and scope is not None:
        # A message built in a local variable first: every string assigned to it in the same function.
        options = [
            option
            for assign in ast.walk(scope)
            if isinstance(assign, ast.Assign)
            and any(isinstance(target, ast.Name) and target.id == node.id for target in assign.targets)
            for option in _segments(assign.value, None, depth + 1)
        ]
        return options or [[]]
    return [[]]


def _is_stderr(node: ast.AST) -> bool:
    return ast.unparse(node) == "sys.stderr"


def _message_args(node: ast.AST):
    """(origin, candidate message expressions) for each place in a node that produces an error message."""
    if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
        # Any exception raised with a message; for ChecksumError(file, message) the message is not the first.
        func = node.exc.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "call")
        yield f"raise {name}", [*node.exc.args, *(kw.value for kw in node.exc.keywords if kw.arg == "msg")]
    elif isinstance(node, ast.Call):
        func = node.func
        keywords = {kw.arg: kw.value for kw in node.keywords}
        if isinstance(func, ast.Attribute) and func.attr == "fail_json":
            yield "fail_json", [keywords["msg"]] if "msg" in keywords else node.args[:1]
        elif isinstance(func, ast.Attribute) and func.attr == "write" and _is_stderr(func.value):
            yield "stderr", node.args[:1]
        elif ast.unparse(func) == "sys.exit":  # sys.exit("message") prints it to stderr
            yield "sys.exit", node.args[:1]
        elif isinstance(func, ast.Name) and func.id == "print":
            if "file" in keywords and _is_stderr(keywords["file"]):
                yield "stderr", node.args[:1]
        elif isinstance(func, ast.Attribute) and func.attr == "error" and ast.unparse(func.value) == "report":
            # env_validate's Report.error(variable, problem, expected): the problem text.
            yield "env validation", node.args[1:2]
        elif "failed" in keywords and "msg" in keywords:  # result.update(failed=True, msg=...)
            yield "failed result", [keywords["msg"]]
    elif isinstance(node, ast.Assign):
        # result["msg"] = ... (action plugins), result.msg = ... (a module's result object)
        for target in node.targets:
            subscript = isinstance(target, ast.Subscript) and ast.unparse(target.slice) in ("'msg'", '"msg"')
            if subscript or (isinstance(target, ast.Attribute) and target.attr == "msg"):
                yield "result msg", [node.value]
    elif isinstance(node, ast.Dict):
        keys = {
            key.value: value
            for key, value in zip(node.keys, node.values, strict=True)
            if isinstance(key, ast.Constant)
        }
        if "failed" in keys and "msg" in keys:  # {"failed": True, "msg": ...}
            yield "failed result", [keys["msg"]]


def collect_python(path: Path, root: Path = ROOT) -> list[Message]:
    tree = ast.parse(path.read_text(), filename=str(path))
    scopes = {}
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for child in ast.walk(function):
                scopes.setdefault(id(child), function)  # the outermost function wins: closures see it
    found = []
    for node in ast.walk(tree):
        for origin, candidates in _message_args(node):
            where = f"{path.relative_to(root)}:{node.lineno}"
            for expression in candidates:  # the first argument that holds a message
                keys = {key_of(option) for option in _segments(expression, scopes.get(id(node)))} - {None}
                if keys:
                    found += [Message(key, where, origin) for key in sorted(keys)]
                    break
    return sorted(found, key=lambda message: int(message.where.rsplit(":", 1)[1]))


# --- shell --------------------------------------------------------------------------------------------------

# An error line of a shell script: `echo "..." >&2`, and in the image entrypoints `die "..."` and
# `log "ERROR: ..."` (both print to stderr, which is the container log).
_SHELL_ERRORS = (
    ("echo >&2", re.compile(r"""\becho\s+(?:-e\s+)?(["'])(?P<text>.*?)(?<!\\)\1[^|;&]*>&2""")),
    ("die", re.compile(r"""\bdie\s+(["'])(?P<text>.*?)(?<!\\)\1""")),
    ("log ERROR", re.compile(r"""\blog\s+(["'])(?P<text>ERROR: .*?)(?<!\\)\1""")),
)
_SHELL_EXPANSION = re.compile(r"\$\((?:[^()]|\([^()]*\))*\)|\$\{[^}]*\}|\$\w+|`[^`]*`")


def collect_shell(path: Path, root: Path = ROOT) -> list[Message]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        for origin, pattern in _SHELL_ERRORS:
            for match in pattern.finditer(line):
                key = key_of(_SHELL_EXPANSION.split(match.group("text")))
                if key:
                    found.append(Message(key, f"{path.relative_to(root)}:{number}", origin))
    return found


# --- the project --------------------------------------------------------------------------------------------


def _script_kind(path: Path) -> str | None:
    first = path.read_text(errors="replace").split("\n", 1)[0]
    if not first.startswith("#!"):
        return None
    if "python" in first:
        return "python"
    if first.endswith(("sh", "bash")):
        return "shell"
    return None


def collect(root: Path = ROOT) -> list[Message]:
    """Every message of the project under root, exclusions not yet applied."""
    messages = []
    for path in sorted([*root.glob("roles/**/tasks/*.yml"), *root.glob("playbooks/*.yml")]):
        messages += collect_ansible(path, root)
    python = [
        *[
            path
            for folder in ("modules", "action", "module_utils", "filter", "lookup")
            for path in (root / "plugins" / folder).glob("*.py")
        ],
        *root.glob("roles/*/files/*.py"),
    ]
    shell = [root / "bootstrap.sh", root / "tests" / "run.sh", *root.glob("roles/*/files/*/*.sh")]
    for path in sorted((root / "bin").glob("*")):
        kind = _script_kind(path) if path.is_file() else None
        (python if kind == "python" else shell if kind == "shell" else []).append(path)
    for path in sorted(python):
        messages += collect_python(path, root)
    for path in sorted(path for path in shell if path.is_file()):
        messages += collect_shell(path, root)
    return messages


def is_excluded(message: Message) -> bool:
    file = message.where.rsplit(":", 1)[0]
    return any(file == excluded_file and key in message.key for excluded_file, key in EXCLUDED)


def missing_from(doc_text: str, messages: list[Message]) -> list[str]:
    """One line per message (or task name) the doc lacks."""
    doc = normalise(doc_text)
    missing = []
    for message in messages:
        if is_excluded(message):
            continue
        if message.task is not None and message.task not in doc_text:
            missing.append(
                f"{message.where}: {message.origin} named {message.task!r} has no entry (### heading)"
            )
        if message.key and message.key not in doc:
            missing.append(f"{message.where}: {message.origin}: {message.key!r}")
    return missing


# --- tests --------------------------------------------------------------------------------------------------


def test_every_error_message_has_an_entry():
    messages = collect()
    missing = missing_from(DOC.read_text(), messages)
    assert not missing, (
        f"{len(missing)} error message(s) have no entry in docs/troubleshooting.md "
        "(add the message as printed, its cause and its fix; see this test's docstring):\n  "
        + "\n  ".join(missing)
    )


def test_the_collector_finds_messages_from_every_source():
    messages = collect()
    origins = {message.origin for message in messages}
    files = {message.where.rsplit(":", 1)[0] for message in messages}
    assert {"fail task", "assert task", "fail_json", "stderr", "echo >&2", "env validation"} <= origins
    assert any(origin.startswith("raise ") for origin in origins)
    for expected in (
        "bootstrap.sh",
        "bin/cmx",
        "playbooks/status.yml",
        "bin/cmx-env",
        "plugins/action/cmx_vault_check.py",
    ):
        assert expected in files, expected
    assert len(messages) > 100


def test_every_exclusion_still_matches_a_message():
    """A message that was removed or reworded must leave EXCLUDED too, or the list only grows."""
    messages = collect()
    for file, key in sorted(EXCLUDED):
        assert any(message.where.startswith(f"{file}:") and key in message.key for message in messages), (
            f"EXCLUDED entry ({file!r}, {key!r}) matches no collected message: remove it"
        )


def test_an_undocumented_message_is_reported(tmp_path):
    """The collector really fails on a new message: fake sources in a temporary tree, a doc without them."""
    (tmp_path / "plugins" / "modules").mkdir(parents=True)
    (tmp_path / "plugins" / "modules" / "cmx_fake.py").write_text(
        "def main(module, port):\n"
        "    message = f'Port {port} is held by a fake process nobody documented'\n"
        "    if port:\n"
        "        module.fail_json(msg=message)\n"
        "    raise FakeError(f'{port}: the fake backup folder is not readable')\n"
        "    module.fail_json(msg=str(port))\n"  # a passthrough: nothing to document
    )
    (tmp_path / "roles" / "fake" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "fake" / "tasks" / "main.yml").write_text(
        "---\n"
        "- name: Fake block\n"
        "  block:\n"
        "    - name: Stop on the fake problem\n"
        "      ansible.builtin.fail:\n"
        "        msg: >-\n"
        "          The fake service on {{ inventory_hostname }} is undocumented and nobody knows why\n"
    )
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "cmx-fake").write_text(
        '#!/usr/bin/env bash\necho "cmx-fake: the fake folder $dir is missing entirely" >&2\n'
    )
    messages = collect(tmp_path)
    doc = "### Something else\nThe fake service on <host> is undocumented\n"
    missing = missing_from(doc, messages)
    assert missing == [
        "roles/fake/tasks/main.yml:4: fail task named 'Stop on the fake problem' has no entry (### heading)",
        "plugins/modules/cmx_fake.py:4: fail_json: 'is held by a fake process nobody documented'",
        "plugins/modules/cmx_fake.py:5: raise FakeError: ': the fake backup folder is not readable'",
        "bin/cmx-fake:2: echo >&2: 'cmx-fake: the fake folder'",
    ]
    # Documented, they pass: the task name as a heading, each key text anywhere in the doc.
    doc += (
        "### Stop on the fake problem\n`Port <port> is held by a fake process nobody documented`\n"
        "`<port>: the fake backup folder is not readable` and `cmx-fake: the fake folder <dir> is missing`\n"
    )
    assert missing_from(doc, messages) == []


def test_key_text_rules():
    assert (
        key_of(["Refusing to restore a backup over the ", " data"]) == "Refusing to restore a backup over the"
    )
    assert key_of(["", ": the manifest lists no files"]) == ": the manifest lists no files"
    assert key_of(["cmx-env: ", ""]) is None
    long = "one two three four five six seven eight nine ten eleven twelve thirteen"
    assert key_of([long]) == long.rsplit(" ", 1)[0]
