"""A GPU-check section run in a child process returns its result, and a kernel that kills its
process fails that section alone: the check records it and goes on to the next."""

from __future__ import annotations

import json
import os

from benchmarks.gpu_check import in_child_process, run_section


def test_a_section_in_a_child_process_returns_its_result() -> None:
    assert in_child_process(json.loads, '{"passed": true, "value": 3}') == {"passed": True, "value": 3}


def test_a_child_that_dies_fails_its_section_only() -> None:
    crashed = run_section("attention", lambda: in_child_process(os.abort))  # as a segfaulting kernel would
    assert crashed["passed"] is False and "BrokenProcessPool" in crashed["error"]
    after = run_section("e2e", lambda: in_child_process(json.loads, '{"passed": true}'))
    assert after["passed"] is True
