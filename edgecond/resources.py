"""What a process runs on and costs: the torch device (`--device auto`) and peak resident memory
(reported by condense and the benchmarks)."""

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


COMPUTE_DTYPES = ("fp32", "bf16")


def compute_precision(dtype: str, device):
    """The context condensation's heavy passes run in (`match.compute_dtype`): fp32 as written, or
    bfloat16 autocast -- convolutions and matrix products in bf16 (twice the fp32 rate on cores
    with bf16 units and on GPUs), reductions and norms in fp32; gradients with respect to fp32
    parameters come back in fp32, and parameters stay fp32."""
    import contextlib

    import torch

    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    raise ValueError(f"unknown match.compute_dtype {dtype!r}; choose {' or '.join(COMPUTE_DTYPES)}")


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """`auto`: CUDA when torch sees a GPU, else the CPU -- so a workstation's GPU is used without a
    flag; `cuda` without one is refused in one line rather than failing inside torch."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; choose {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here (this torch build or machine has none); "
                         "use --device cpu or auto")
    return name
