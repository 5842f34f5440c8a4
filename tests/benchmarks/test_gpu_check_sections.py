"""A GPU-check section run in a child process returns its result, and a kernel that kills its
process, hangs it or raises fails that section alone: the check records it and goes on to the next."""

from __future__ import annotations

import json
import os
import time

from benchmarks.gpu_check import in_child_process, run_section


def test_a_section_in_a_child_process_returns_its_result() -> None:
    assert in_child_process(json.loads, '{"passed": true, "value": 3}', timeout_s=60) == {"passed": True, "value": 3}


def test_a_child_that_dies_fails_its_section_only() -> None:
    crashed = run_section("attention", lambda: in_child_process(os.abort, timeout_s=60))  # as a segfaulting kernel would
    assert crashed["passed"] is False and "process died" in crashed["error"]
    after = run_section("e2e", lambda: in_child_process(json.loads, '{"passed": true}', timeout_s=60))
    assert after["passed"] is True


def test_a_child_that_hangs_fails_its_section_after_the_timeout() -> None:
    started = time.perf_counter()
    hung = run_section("attention", lambda: in_child_process(time.sleep, 120, timeout_s=3))  # as a stuck compile would
    assert hung["passed"] is False and "TimeoutError" in hung["error"]
    assert time.perf_counter() - started < 60


def test_an_exception_in_the_child_fails_its_section_with_the_childs_traceback() -> None:
    raised = run_section("parity", lambda: in_child_process(json.loads, "not json", timeout_s=60))
    assert raised["passed"] is False and "JSONDecodeError" in raised["error"]
