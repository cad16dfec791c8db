"""An Avalanche class-incremental stream over any edgecond dataset."""

from __future__ import annotations

import warnings

import torch

from ..data import Dataset


def avalanche_dataset(x: torch.Tensor, y: torch.Tensor):
    """Tensors -> an Avalanche classification dataset whose items are (x, y, task=0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

    return _make_taskaware_tensor_classification_dataset(x, y.long())


def class_order(num_classes: int, seed: int) -> list[int]:
    return torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed)).tolist()


def split_classes(order: list[int], experiences: int) -> list[list[int]]:
    """Classes per experience, as even as possible (Avalanche silently drops a remainder; we don't)."""
    if not 1 <= experiences <= len(order):
        raise ValueError(f"--experiences must be in 1..{len(order)}, got {experiences}")
    base, extra = divmod(len(order), experiences)
    sizes = [base + (1 if i < extra else 0) for i in range(experiences)]
    out, start = [], 0
    for n in sizes:
        out.append(order[start:start + n])
        start += n
    return out


def build_stream(data: Dataset, experiences: int, seed: int):
    """(Avalanche CLScenario, classes per experience) with a fixed class order from `seed`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark

    order = class_order(data.num_classes, seed)
    groups = split_classes(order, experiences)
    bench = class_incremental_benchmark(
        {"train": avalanche_dataset(data.x_train, data.y_train), "test": avalanche_dataset(data.x_test, data.y_test)},
        class_order=order, num_classes_per_exp=[len(g) for g in groups])
    return bench, groups
