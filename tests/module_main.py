"""Run a module's main() in the test process, as Ansible would run it, and return its printed result."""

from __future__ import annotations

import contextlib
import io
import json


def run_main(module, params: dict) -> dict:
    from ansible.module_utils.testing import patch_module_args

    out = io.StringIO()
    with patch_module_args(params), contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        module.main()
    return json.loads(out.getvalue())
