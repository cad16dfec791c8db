"""Fault injection for the reliability tests (tests/test_faults.py). Inert unless EDGECOND_KILL_AT is set.

Random-moment kills come from outside (the test sends SIGKILL after a seeded delay); what
random timing rarely hits is the middle of a file write, so writes have a named point:

    EDGECOND_KILL_AT=write:checkpoint.pt:2

SIGKILLs the process during its 2nd write of a file named checkpoint.pt, after half of the
new bytes reached the temporary file and before the rename -- the torn state a power cut or
an OOM kill leaves. io.atomic_write guarantees a reader never sees it under the real name.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter = Counter()


def during_write(name: str, tmp: str) -> None:
    """Called by io.atomic_write between writing `tmp` and renaming it to `name`."""
    spec = os.environ.get("EDGECOND_KILL_AT")
    if not spec:
        return
    point, _, rest = spec.partition(":")
    target, _, nth = rest.rpartition(":")
    if point != "write" or target != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth or 1):
        size = os.path.getsize(tmp)
        with open(tmp, "r+b") as f:  # a torn write: only the first half reached the disk
            f.truncate(size // 2)
        os.kill(os.getpid(), signal.SIGKILL)
