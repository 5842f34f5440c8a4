"""The process's resident memory as the kernel counts it: the current size and the peak since a reset.

Torch has no allocator statistics on CPU and tracemalloc does not see tensor storage, so memory
is read from /proc/self/status: VmRSS (now) and VmHWM (the high-water mark). Writing 5 to
/proc/self/clear_refs sets VmHWM back to VmRSS, so the peak of one phase (loading, a step, an
export) can be measured from just before it.
"""

from __future__ import annotations

import re
from pathlib import Path


def status_bytes(key: str) -> int:
    """A /proc/self/status memory figure (reported in kB) in bytes, e.g. "VmRSS" or "VmHWM"."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024


def reset_peak() -> int:
    """Set the peak (VmHWM) back to the current resident size and return that size in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_bytes("VmRSS")
