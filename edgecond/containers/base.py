"""What every data container is: a module that generates image (class c, instance i).

A container stores parameters (pixels, memories, a decoder) and generates images in the
normalised space the classifier trains on. Instance i of class c is the i-th image in the
class's *prefix order*: the first k instances of every class form the container's k-per-class
subset (the multisize invariant), so pruning and reordering happen by rewriting storage,
never by an index table on the side.
"""

from __future__ import annotations

from typing import ClassVar, Iterator

import torch
from torch import nn


class Container(nn.Module):
    """`precision` says how the values are stored (quantise.py): `generate` reads them as stored
    (fake-quantised, gradients straight through), so matching trains what the device will read.
    `pixel_stats` (mean, std) is the space image-like tensors are stored in as uint8 pixels."""

    kind: ClassVar[str] = "base"

    def __init__(self, num_classes: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.num_classes = int(num_classes)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.precision = "fp32"
        self.pixel_stats: tuple[list[float], list[float]] | None = None

    # -- what subclasses provide ------------------------------------------------------
    @property
    def instances_per_class(self) -> int:
        raise NotImplementedError

    def _generate(self, classes: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """Images for valid index pairs; traceable (gathers by index_select) so it exports to ONNX."""
        raise NotImplementedError

    def _generate_own(self, classes: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """`_generate` with gradients to the pairs' own parameters only (see generate_own)."""
        return self._generate(classes, instances)

    def generate(self, classes: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) for the pairs (classes[n], instances[n]); each depends on its pair alone."""
        self.check_indices(classes, instances)
        if self.precision == "fp32":
            return self._generate(classes, instances)
        return torch.func.functional_call(self, self.values_as_stored(), (classes, instances))

    def generate_own(self, classes: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """Like `generate`, but gradients reach only the pairs' own parameters, not tiers shared
        with other instances (MDC's subset loss uses it). Pixel-like containers own everything."""
        self.check_indices(classes, instances)
        if self.precision == "fp32":
            return self._generate_own(classes, instances)
        return torch.func.functional_call(self, self.values_as_stored(), (classes, instances), {"own": True})

    def forward(self, classes: torch.Tensor, instances: torch.Tensor, own: bool = False) -> torch.Tensor:
        """Unchecked generation from the module's current values (what `generate` calls with the
        stored values swapped in)."""
        return self._generate_own(classes, instances) if own else self._generate(classes, instances)

    # -- storage -------------------------------------------------------------------------
    def image_like(self, name: str) -> bool:
        """Whether state tensor `name` holds images (stored as uint8 pixels at 8-bit precisions)."""
        return False

    def storage_axis(self, name: str) -> int:
        """The channel axis of state tensor `name` for int8 storage's per-channel scales: the axis
        the exported graph holds at position 1 (quantise.py). Axis 1 unless a kind says otherwise."""
        return 1

    def stored_per_slice(self, name: str) -> bool:
        """Whether state tensor `name` is stored as separate tensors t[0], t[1], ... (the exported
        graph holds each slice on its own, so each gets its own scales; HaBa's hallucinators)."""
        return False

    def storage_precision(self, name: str, precision: str | None = None) -> str:
        """How state tensor `name` is stored at `precision` (default: the container's): that
        precision, except image-like tensors, which 8-bit storage keeps as uint8 pixel levels."""
        precision = precision or self.precision
        if precision in ("int8", "uint8") and self.image_like(name):
            return "uint8"
        if precision == "uint8":
            raise ValueError(f"{self.kind}: {name} is not image-like and cannot be stored as uint8 pixels")
        return precision

    def values_as_stored(self, differentiable: bool = True) -> dict[str, torch.Tensor]:
        """Every floating-point state tensor as stored (quantise.py); `differentiable`: through the
        straight-through estimator, so gradients reach the raw values."""
        from ..quantise import fake_quantise, quantise

        rounding = fake_quantise if differentiable else quantise
        mean, std = self.pixel_stats or (None, None)

        def stored(name, t):
            prec, axis = self.storage_precision(name), self.storage_axis(name)
            if self.stored_per_slice(name):
                return torch.stack([rounding(piece, prec, mean, std, axis=axis) for piece in t.unbind(0)])
            return rounding(t, prec, mean, std, axis=axis)
        state = list(self.named_parameters()) + list(self.named_buffers())
        return {name: stored(name, t) for name, t in state if t.is_floating_point()}

    @torch.no_grad()
    def commit_storage(self) -> None:
        """Replace the raw values by the values as stored (after training: the file then holds what
        the device reads, and generating from it needs no rounding that could differ)."""
        if self.precision == "fp32":
            return
        state = dict(self.named_parameters()) | dict(self.named_buffers())
        for name, t in self.values_as_stored(differentiable=False).items():
            state[name].copy_(t)

    def config(self) -> dict:
        """JSON-able keyword arguments that rebuild this container's structure."""
        raise NotImplementedError

    PARTS: ClassVar[tuple[str, ...]] = ()  # the named parts (tiers), in report order

    def part_of(self, name: str) -> str:
        """The part (tier) state tensor `name` belongs to; by default its top-level module or tensor."""
        return name.split(".")[0]

    def _by_part(self, size) -> dict[str, int]:
        out = dict.fromkeys(self.PARTS, 0)
        for name, t in self.state_dict().items():
            if t.is_floating_point():
                part = self.part_of(name)
                out[part] = out.get(part, 0) + size(name, t)
        return out

    def parts(self) -> dict[str, int]:
        """Stored values per named part (sums to stored_floats())."""
        return self._by_part(lambda name, t: t.numel())

    def parts_bytes(self, precision: str | None = None) -> dict[str, int]:
        """Bytes per named part as stored at `precision` (default: the container's), int8 scales included."""
        from ..quantise import tensor_bytes

        def size(name, t):
            pieces = t.unbind(0) if self.stored_per_slice(name) else [t]
            prec = self.storage_precision(name, precision)
            return sum(tensor_bytes(piece, prec, self.storage_axis(name)) for piece in pieces)
        return self._by_part(size)

    def stored_bytes(self, precision: str | None = None) -> int:
        return sum(self.parts_bytes(precision).values())

    def select_instances(self, keep: torch.Tensor) -> None:
        """Keep instances keep[c] (a (num_classes, k) index tensor) in that order, drop the rest."""
        raise NotImplementedError

    def frozen_slices(self, n: int) -> list[tuple[torch.nn.Parameter, slice]]:
        """The parameter rows (along dim 1) that belong to the first n instances of every class alone."""
        raise NotImplementedError

    # -- shared behaviour ----------------------------------------------------------------
    def stored_floats(self) -> int:
        """Every stored floating-point value: parameters and buffers (docs/architecture.md, Budgets)."""
        return sum(t.numel() for t in self.state_dict().values() if t.is_floating_point())

    def check_indices(self, classes: torch.Tensor, instances: torch.Tensor) -> None:
        if classes.shape != instances.shape or classes.ndim != 1:
            raise ValueError("classes and instances must be 1-D tensors of equal length")
        if len(classes) and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise IndexError(f"class index out of range 0..{self.num_classes - 1}")
        if len(instances) and (instances.min() < 0 or instances.max() >= self.instances_per_class):
            raise IndexError(f"instance index out of range 0..{self.instances_per_class - 1}")

    def index_grid(self, per_class: int | None = None, classes: list[int] | None = None):
        """(class, instance) index pairs of the first `per_class` instances of `classes`."""
        k = self.instances_per_class if per_class is None else int(per_class)
        if not 0 < k <= self.instances_per_class:
            raise ValueError(f"per_class={k}: this container holds {self.instances_per_class} instances per class")
        cls = torch.tensor(classes if classes is not None else range(self.num_classes), dtype=torch.long)
        c = cls.repeat_interleave(k)
        i = torch.arange(k).repeat(len(cls))
        return c, i

    def iter_batches(self, per_class: int | None = None, classes: list[int] | None = None,
                     batch_size: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        c, i = self.index_grid(per_class, classes)
        for s in range(0, len(c), batch_size):
            yield c[s:s + batch_size], i[s:s + batch_size], self.generate(c[s:s + batch_size], i[s:s + batch_size])

    @torch.no_grad()
    def images(self, per_class: int | None = None, classes: list[int] | None = None,
               batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """All images of the first `per_class` instances, class-major, with their labels."""
        was_training = self.training
        self.eval()
        xs, ys = [], []
        for c, _, x in self.iter_batches(per_class, classes, batch_size):
            xs.append(x)
            ys.append(c)
        self.train(was_training)
        return torch.cat(xs), torch.cat(ys)
