"""An Avalanche class-incremental stream over any edgecond dataset, built with Avalanche's own
public generator (`class_incremental_benchmark`) from tensors -- what any user's benchmark is."""

from __future__ import annotations

import warnings

import torch

from ..config import NORMALISATIONS
from ..data import Dataset


class _LabelledImages(torch.utils.data.TensorDataset):
    """(image tensor, int label) items, as Avalanche's own tensor datasets give them."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, int(y)


def labelled_images(x: torch.Tensor, y: torch.Tensor, tensor_labels: bool = False) -> torch.utils.data.Dataset:
    """(image, label) items: int labels (Avalanche's tensor datasets), or 0-d tensors."""
    return torch.utils.data.TensorDataset(x, y) if tensor_labels else _LabelledImages(x, y)


def tensor_dataset(x: torch.Tensor, y: torch.Tensor, task_label: int = 0, transform=None, tensor_labels: bool = False):
    """Tensors -> an Avalanche classification dataset whose items are (x, y, task), through
    Avalanche's public dataset classes. The task label is in every item because Avalanche 0.6's
    replay buffers (ParametricBuffer's subsets) add one: a stream without it cannot be collated
    with their exemplars. Labels and task labels are held as Avalanche's own tensor datasets hold
    them (ints; the task label a constant sequence): iCaRL concatenates and collates such a
    dataset of exemplars with the stream, which fails on a list of task labels or tensor labels.
    `tensor_labels`: 0-d tensor labels instead, as a stream over a plain TensorDataset gives them
    (a replay dataset must match the stream it is collated with). `transform` (on image
    tensors) applies in the train group."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from avalanche.benchmarks.utils import DataAttribute, TaskAwareSupervisedClassificationDataset, TransformGroups
        from avalanche.benchmarks.utils.flat_data import ConstantSequence

    y = y.long()
    attrs = [DataAttribute(y.tolist(), "targets"),
             DataAttribute(ConstantSequence(task_label, len(y)), "targets_task_labels", use_in_getitem=True)]
    groups = TransformGroups({"train": (transform, None), "eval": None}) if transform is not None else None
    return TaskAwareSupervisedClassificationDataset([labelled_images(x, y, tensor_labels)], data_attributes=attrs,
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


def build_stream(data: Dataset, experiences: int, seed: int, normalise: str = "first-experience"):
    """(Avalanche CLScenario, classes per experience, (mean, std) or None) with a fixed class
    order from `seed`.

    The learner never sees statistics of classes to come (the Dataset's own normalisation uses
    the whole train split). `normalise="first-experience"`: the stream is standardised with the
    per-channel mean and std of the first experience's training images -- a device calibrating
    its input on the first data it gets -- and those statistics are returned, for the replay
    buffers to work in the same space. `"none"`: the stream holds [0, 1] pixels, as torchvision's
    ToTensor gives them (CondensedReplay then normalises with what it has seen so far).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from avalanche.benchmarks.scenarios import class_incremental_benchmark

    if normalise not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalise!r}; choose from {', '.join(NORMALISATIONS)}")
    order = class_order(data.num_classes, seed)
    groups = split_classes(order, experiences)
    x_train, x_test = data.to_pixels(data.x_train), data.to_pixels(data.x_test)
    stats = None
    if normalise == "first-experience":
        first = x_train[torch.isin(data.y_train, torch.tensor(groups[0]))]
        mean, std = first.mean(dim=(0, 2, 3)), first.std(dim=(0, 2, 3)).clamp_min(1e-3)
        x_train, x_test = ((x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1) for x in (x_train, x_test))
        stats = (mean.tolist(), std.tolist())
    bench = class_incremental_benchmark(
        {"train": tensor_dataset(x_train, data.y_train), "test": tensor_dataset(x_test, data.y_test)},
        class_order=order, num_classes_per_exp=[len(g) for g in groups])
    return bench, groups, stats
