"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse as YAML, and `ansible-doc` renders it."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.cleanmatex.infra.plugins.module_utils import task_module

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted((ROOT / "plugins" / "modules").glob("cmx_*.py"))


def doc_strings(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                    found[target.id] = node.value.value
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_docs_are_valid_yaml(path):
    docs = doc_strings(path)
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    documentation = yaml.safe_load(docs["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    assert documentation["short_description"]
    assert isinstance(yaml.safe_load(docs["EXAMPLES"]), list)
    assert isinstance(yaml.safe_load(docs["RETURN"]), dict)


def test_ansible_doc_renders_every_module():
    names = [f"cleanmatex.infra.{path.stem}" for path in MODULES]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Unable to parse documentation" not in done.stderr, done.stderr


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice (PyYAML keeps the last one silently)."""


def _no_duplicate_keys(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


class _SpecSeen(Exception):
    """Raised by the stand-in AnsibleModule once main() has handed over its argument spec."""


def argument_spec(path: Path) -> dict:
    """The argument spec main() gives AnsibleModule, captured before any work is done."""
    module = importlib.import_module(f"ansible_collections.cleanmatex.infra.plugins.modules.{path.stem}")

    def capture(argument_spec, **_kwargs):
        raise _SpecSeen(argument_spec)

    with pytest.MonkeyPatch.context() as patch:
        # Modules built on module_utils/task_module.py create their AnsibleModule there.
        target = module if hasattr(module, "AnsibleModule") else task_module
        patch.setattr(target, "AnsibleModule", capture)
        with pytest.raises(_SpecSeen) as seen:
            module.main()
    return seen.value.args[0]


def differences(spec: dict, docs: dict, path: str = "") -> list[str]:
    """What ansible-test validate-modules would report: each option's type, default, required, choices,
    elements and suboptions as documented versus as the code declares them."""
    found = [f"{path}{name}: in the code, not documented" for name in sorted(set(spec) - set(docs))]
    found += [f"{path}{name}: documented, not in the code" for name in sorted(set(docs) - set(spec))]
    for name in sorted(set(spec) & set(docs)):
        option, doc = spec[name], docs[name] or {}
        for key, absent in (("type", "str"), ("default", None), ("required", False), ("choices", None),
                            ("elements", None)):  # fmt: skip
            code_value, doc_value = option.get(key, absent), doc.get(key, absent)
            if code_value != doc_value:
                found.append(f"{path}{name}: {key} is {code_value!r} in the code, {doc_value!r} in the docs")
        if "options" in option or "suboptions" in doc:
            found += differences(option.get("options") or {}, doc.get("suboptions") or {}, f"{path}{name}.")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_documentation_matches_the_argument_spec(path):
    """A stand-in for ansible-test validate-modules, for every module: no key given twice in the docs, and
    every option documented as the code declares it."""
    documentation = yaml.load(doc_strings(path)["DOCUMENTATION"], Loader=StrictLoader)
    options = dict(documentation.get("options") or {})
    for fragment in documentation.get("extends_documentation_fragment") or []:
        source = importlib.import_module(
            f"ansible_collections.cleanmatex.infra.plugins.doc_fragments.{fragment.split('.')[-1]}"
        )
        options.update(yaml.load(source.ModuleDocFragment.DOCUMENTATION, Loader=StrictLoader)["options"])
    assert differences(argument_spec(path), options) == []


def test_the_comparison_finds_a_wrong_default_and_a_duplicate_key():
    code = {"port": {"type": "int", "default": 5432}, "name": {"type": "str", "choices": ["a", "b"]}}
    docs = {"port": {"type": "int", "default": 6432}, "name": {"type": "str"}, "extra": {"type": "str"}}
    assert differences(code, docs) == [
        "extra: documented, not in the code",
        "name: choices is ['a', 'b'] in the code, None in the docs",
        "port: default is 5432 in the code, 6432 in the docs",
    ]
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'default'"):
        yaml.load("options:\n  a:\n    default: x\n    default: []\n", Loader=StrictLoader)
