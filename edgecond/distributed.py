"""torch.distributed plumbing for condensation across processes and hosts.

Launched by torchrun (`torchrun --nproc_per_node N -m edgecond.cli condense ...`), every
rank holds a full replica of the container and the real data of its own classes
(class c belongs to rank c % world_size). In the `summed` update mode each inner iteration
sums the matching losses of all classes: every rank back-propagates its classes' losses,
the gradients are all-reduced (summed), and every rank takes the same optimiser step -- so
the replicas stay identical, and a 1-process run of the same mode computes the same thing.
The matching network trains data-parallel the same way (per-class sub-batches, gradients
all-reduced). Randomness is drawn per (outer, inner, class), never per rank, which is what
makes N ranks equal 1. Only rank 0 writes checkpoints, the report and the container.

Backend: nccl on CUDA, gloo on CPU. Rank failures surface through torchrun, which stops the
job and names the failed rank; checkpoints are written atomically, so the last one stays
valid and `--resume` continues on any world size.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "cpu", timeout_s: int = 600) -> None:
    """Join the process group torchrun describes (no-op for a plain single process)."""
    if launched_by_torchrun() and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def owned_classes(num_classes: int) -> list[int]:
    return [c for c in range(num_classes) if c % world_size() == rank()]


def all_reduce_sum_(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor across ranks in place (one flat buffer: one collective)."""
    if world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def all_reduce_grads_(params: list[torch.nn.Parameter]) -> None:
    """Sum parameter gradients across ranks (missing ones count as zero)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_sum_([p.grad for p in params])


def gather_float(value: float) -> list[float]:
    """Every rank's value, in rank order (a single process: [value])."""
    if world_size() == 1:
        return [float(value)]
    t = torch.zeros(world_size(), dtype=torch.float64)
    t[rank()] = value
    all_reduce_sum_([t])
    return t.tolist()


def generator(*key) -> torch.Generator:
    """A generator seeded by a key (e.g. seed, outer, inner, class): the same on every rank."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def maybe_fail(outer: int) -> None:
    """Fault injection for tests: EDGECOND_FAIL_RANK=r EDGECOND_FAIL_AT=t kills rank r at outer t."""
    if os.environ.get("EDGECOND_FAIL_RANK") == str(rank()) and os.environ.get("EDGECOND_FAIL_AT") == str(outer):
        os._exit(17)
