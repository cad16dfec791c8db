"""An Avalanche class-incremental stream over any edgecond dataset, built with Avalanche's own
public generator (`class_incremental_benchmark`) from tensors -- what any user's benchmark is."""

from __future__ import annotations

import warnings

import torch

from ..data import Dataset


def tensor_dataset(x: torch.Tensor, y: torch.Tensor, task_label: int = 0, transform=None):
    """Tensors -> an Avalanche classification dataset whose items are (x, y, task), through
    Avalanche's public dataset classes. The task label is in every item because Avalanche 0.6's
    replay buffers (ParametricBuffer's subsets) add one: a stream without it cannot be collated
    with their exemplars. `transform` (on image tensors) applies in the train group."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from avalanche.benchmarks.utils import DataAttribute, TaskAwareSupervisedClassificationDataset, TransformGroups

    y = y.long()
    attrs = [DataAttribute(y.tolist(), "targets"),
             DataAttribute([task_label] * len(y), "targets_task_labels", use_in_getitem=True)]
    groups = TransformGroups({"train": (transform, None), "eval": None}) if transform is not None else None
    return TaskAwareSupervisedClassificationDataset([torch.utils.data.TensorDataset(x, y)], data_attributes=attrs,
                                                    transform_groups=groups)


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
    """(Avalanche CLScenario, classes per experience) with a fixed class order from `seed`. The
    stream holds [0, 1] pixels, as torchvision's ToTensor gives them: statistics of the whole
    train split (the Dataset's normalisation) would tell the learner about classes to come."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from avalanche.benchmarks.scenarios import class_incremental_benchmark

    order = class_order(data.num_classes, seed)
    groups = split_classes(order, experiences)
    bench = class_incremental_benchmark(
        {"train": tensor_dataset(data.to_pixels(data.x_train), data.y_train),
         "test": tensor_dataset(data.to_pixels(data.x_test), data.y_test)},
        class_order=order, num_classes_per_exp=[len(g) for g in groups])
    return bench, groups
