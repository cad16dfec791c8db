"""Replay plugins for any Avalanche strategy: `plugins=[CondensedReplay(...)]`.

Each is Avalanche's own ReplayPlugin (it mixes replay into every minibatch in
`before_training_exp`) with a byte-budgeted storage policy from `storage.py`, filled in
`after_training_exp` through the policy's `post_adapt` hook (Avalanche 0.6's ReplayPlugin still
calls the deprecated `update`). `BufferSchedule` shrinks or grows a buffer per experience (a
device whose free memory changes) without condensing again.
"""

from __future__ import annotations

import warnings

from ..quantise import BYTE_BUDGET_PRECISION
from .storage import CondensedBuffer, ExemplarBuffer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from avalanche.core import SupervisedPlugin
    from avalanche.training.plugins import ReplayPlugin


class _PostAdaptReplay(ReplayPlugin):
    def after_training_exp(self, strategy, **kwargs):
        with warnings.catch_warnings():  # Avalanche's subsets and loaders warn on every experience
            warnings.simplefilter("ignore", DeprecationWarning)
            self.storage_policy.post_adapt(strategy, strategy.experience)


class CondensedReplay(_PostAdaptReplay):
    """Replay regenerated on the device from condensed containers within a byte budget.

    After each experience its own dataset is condensed into a container of `kind` (HMN by
    default) holding its classes' share of `budget_bytes`, stored and condensed at `precision`
    (int8 by default: about 4x the values of fp32 in the same bytes; fp16 2x), exported to ONNX, and only the model is kept; before the next experience the replay images are regenerated
    by onnxruntime. Keyword arguments go to `CondensedBuffer` (max_size, preset, settings,
    seed, mean/std, flip, workdir, device, threads, transform); `batch_size` and
    `batch_size_mem` are ReplayPlugin's.

        from edgecond.continual import CondensedReplay, ipc_bytes
        replay = CondensedReplay(ipc_bytes(10, (1, 8, 8), 10), num_classes=10)
        Naive(model, optimizer, criterion=CrossEntropyLoss(), plugins=[replay])
    """

    def __init__(self, budget_bytes: int, num_classes: int, *, kind: str = "hmn", precision: str = BYTE_BUDGET_PRECISION,
                 batch_size: int | None = None, batch_size_mem: int | None = None, **buffer_kwargs):
        policy = CondensedBuffer(budget_bytes, num_classes, kind=kind, precision=precision, **buffer_kwargs)
        super().__init__(mem_size=policy.max_size, batch_size=batch_size, batch_size_mem=batch_size_mem,
                         storage_policy=policy)


class ExemplarReplay(_PostAdaptReplay):
    """Real uint8 exemplars within the same kind of byte budget: budget_bytes / num_classes /
    (C*H*W) images per class, chosen by `selection_strategy` (random by default, or e.g.
    Avalanche's HerdingSelectionStrategy(model, layer_name))."""

    def __init__(self, budget_bytes: int, num_classes: int, *, selection_strategy=None,
                 batch_size: int | None = None, batch_size_mem: int | None = None):
        policy = ExemplarBuffer(budget_bytes, num_classes, selection_strategy=selection_strategy)
        super().__init__(mem_size=policy.max_size, batch_size=batch_size, batch_size_mem=batch_size_mem,
                         storage_policy=policy)


class BufferSchedule(SupervisedPlugin):
    """Images per class a device can replay while training each experience: before experience t
    the buffer is resized to per_class[t] (the last entry repeats) times the classes seen. A
    CondensedBuffer regenerates shorter multisize prefixes, so nothing is condensed again.
    Runs at `before_train_dataset_adaptation`, ahead of every plugin's `before_training_exp`."""

    def __init__(self, storage_policy, per_class: list[int]):
        super().__init__()
        if not per_class or any(int(k) < 0 for k in per_class):
            raise ValueError("per_class must be a non-empty list of counts >= 0")
        self.storage_policy, self.per_class = storage_policy, [int(k) for k in per_class]

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        t = strategy.experience.current_experience
        k = self.per_class[min(t, len(self.per_class) - 1)]
        self.storage_policy.resize(strategy, k * len(self.storage_policy.seen_classes))
