# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback plugin: how long each long step took, printed right after it (quick ones stay quiet)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: stage_timer
type: aggregate
short_description: Print the duration of every task or loop item that took longer than a threshold
description:
  - After the normal output of a task (or of one item of a loop) that took at least O(threshold) seconds,
    prints C(  ... took 42.1 s). A first run's long stages (installing Docker, building the base image,
    each image build) thus say how long they took, while a one-second re-run prints nothing extra.
  - Enabled in the project's ansible.cfg (C(callbacks_enabled = cleanmatex.infra.stage_timer)).
version_added: 0.1.0
author: CleanMateX DevOps
options:
  threshold:
    description: Seconds from which a duration is printed.
    type: float
    default: 3.0
    env: [{name: CMX_STAGE_TIMER_THRESHOLD}]
    ini: [{section: callback_stage_timer, key: threshold}]
"""

import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "cleanmatex.infra.stage_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._started: dict = {}

    def _threshold(self) -> float:
        try:
            return float(self.get_option("threshold"))
        except (KeyError, TypeError, ValueError):
            return 3.0

    def _start(self, host: str) -> None:
        self._started[host] = time.monotonic()

    def _report(self, result) -> None:
        host = result._host.get_name()
        began = self._started.get(host)
        if began is None:
            return
        now = time.monotonic()
        self._started[host] = now  # the next loop item is timed from here
        took = now - began
        if took >= self._threshold():
            self._display.display(f"  ... took {format_duration(took)}")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._started = {}
        self._task_started = time.monotonic()

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_start(self, host, task):
        self._start(host.get_name())

    def v2_runner_item_on_ok(self, result):
        self._report(result)

    def v2_runner_item_on_failed(self, result):
        self._report(result)

    def v2_runner_on_ok(self, result):
        if "results" not in result._result:  # a loop's items were reported one by one
            self._report(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if "results" not in result._result:
            self._report(result)


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s"
