"""What a process costs: peak resident memory (reported by condense and the benchmarks)."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM where there is one: ru_maxrss keeps the
    parent's high-water mark across fork + exec, so a small child of a big parent looks big."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
