"""The HMN budget solver: which HMN fits a storage budget, and how many images it makes.

Every stored float counts (docs/architecture.md, Budgets): the three memory tiers, the per-class feature
extractors and the decoder (weights, biases, norm affine). Images are not counted.

Shapes. The decoder doubles the resolution per layer, so a memory of side s with L layers
makes s * 2^L px images. We take the most layers L <= 3 that divide the image side and keep
s >= 2: 32 px -> 4x4 memories and 3 layers (the paper's CIFAR/SVHN), 64 -> 8x8 (Tiny),
96 -> 12x12 (ImageNet-10), 28 -> 7x7 with 2 layers, 8 (digits) -> 2x2 with 2 layers.

Tiers. The paper's Table 7 fixes tier channels per (dataset, IPC); `TABLE7` reproduces it.
Elsewhere the solver derives them: from a ladder of shared configurations (rich -> lean) it
takes the richest whose shared part (everything but instance memories) costs at most
`SHARED_SHARE` of the budget -- the paper's own settings spend 3-13% there -- or else the
leanest that leaves room for one instance per class. Given the instance-memory channels, the
number of instances per class is then the most that fits. No fit -> BudgetError.

Capped instances. A CPU schedule matches at most `max_instances` images per class per step,
so when the budget would make more, the surplus must go somewhere: into wider instance
memories (fewer, richer codes), or -- with `widen_decoder` -- first into a wider decoder, the
widest rung of DECODER_LADDER that still leaves room for `max_instances` instances at the
solver's instance channels; what is left then widens the instance memories. At cifar10_mini
10 IPC a (64, 32) decoder reconstructs the real images far better than (10, 6) in the same
budget (benchmarks/capacity.py: 47.8 vs 33.0 % before any matching); the quick preset turns
it on and gives such a decoder a longer warm start and memory-only matching
(kinds.WIDE_DECODER_SCHEDULE: 52.8 % vs 47.2 % for the tiers' decoder, docs/results.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

SHARED_SHARE = 0.15


class BudgetError(ValueError):
    """No HMN fits the requested budget."""


UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "KIB": 1024, "MIB": 1024 ** 2,
         "GIB": 1024 ** 3}


def ipc_bytes(ipc: float, image_shape: tuple[int, ...], num_classes: int, precision: str = "fp32") -> int:
    """Bytes of `ipc` images per class stored at `precision` -- the papers' IPC budget is fp32:
    CIFAR-10 at 1 IPC is 4 * 3 * 32 * 32 * 10 = 122,880 bytes. `precision="uint8"` gives the
    bytes of `ipc` real exemplars per class. The one place this formula is written."""
    from .quantise import BYTES_PER_VALUE

    return round(BYTES_PER_VALUE[precision] * ipc * math.prod(image_shape) * num_classes)


def bytes_ipc(budget_bytes: float, image_shape: tuple[int, ...], num_classes: int) -> float:
    """The inverse of ipc_bytes at fp32: a byte budget as the papers' float32 images per class."""
    return budget_bytes / ipc_bytes(1, image_shape, num_classes)


def parse_bytes(text: str | int) -> int:
    """A byte budget as a user writes it: 122880, '120KB' (1000 bytes a KB), '120KiB', '1.2MB'."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if m is None or unit not in UNITS:
        raise ValueError(f"not a byte budget: {text!r} (a number of bytes, or with KB, MB, GB, KiB, MiB, GiB)")
    value = float(m.group(1)) * UNITS[unit]
    if value < 1 or value != int(value):
        raise ValueError(f"a byte budget is a whole, positive number of bytes: {text!r} is {value:g}")
    return int(value)


@dataclass(frozen=True)
class Tiers:
    dataset_channels: int
    class_channels: int
    fc_channels: int | None  # None: f_c is the identity
    hidden: tuple[int, ...]  # decoder widths before the last layer (truncated to L-1)


# The ladder for derived settings, richest first.
LADDER = {
    "large": Tiers(50, 30, 40, (10, 6)),   # the paper's 10/50-IPC tiers
    "small": Tiers(5, 3, None, (10, 6)),   # the paper's 1-IPC tiers
    "lean": Tiers(4, 2, None, (6, 4)),     # for budgets too small for either (e.g. 8x8 digits)
}

# Decoder widths tried, narrow to wide, when the instance cap leaves budget over (widen_decoder).
DECODER_LADDER = ((10, 6), (16, 8), (24, 12), (32, 16), (48, 24), (64, 32))

# HMN paper Table 7: (C, H, classes, ipc) -> (tiers, instance channels, paper's #instances)
TABLE7 = {
    (3, 32, 10, 1): (Tiers(5, 3, None, (10, 6)), 2, 85),
    (3, 32, 10, 10): (Tiers(50, 30, 40, (10, 6)), 6, 278),
    (3, 32, 10, 50): (Tiers(50, 30, 40, (10, 6)), 8, 1168),
    (3, 32, 100, 1): (Tiers(5, 3, None, (10, 6)), 2, 93),
    (3, 32, 100, 10): (Tiers(50, 30, 40, (10, 6)), 8, 219),
    (3, 32, 100, 50): (Tiers(50, 30, 40, (10, 6)), 14, 673),
    (3, 64, 200, 1): (Tiers(30, 20, None, (10, 6)), 4, 42),
    (3, 64, 200, 10): (Tiers(50, 30, 40, (10, 6)), 10, 185),
}


@dataclass(frozen=True)
class HMNShape:
    """Everything HMN(...) needs, plus the accounting that chose it."""

    num_classes: int
    image_shape: tuple[int, int, int]
    instances: int
    memory_size: int
    dataset_channels: int
    class_channels: int
    instance_channels: int
    fc_channels: int | None
    hidden: tuple[int, ...]
    norm: str = "instance"

    def hmn_kwargs(self) -> dict:
        d = asdict(self)
        d["image_shape"], d["hidden"] = list(self.image_shape), list(self.hidden)
        return d

    @property
    def shared_floats(self) -> int:
        s2, k = self.memory_size ** 2, self.num_classes
        n = self.dataset_channels * s2 + k * self.class_channels * s2
        if self.fc_channels:
            n += k * (self.dataset_channels * self.fc_channels + self.fc_channels)
        feat = self.fc_channels or self.dataset_channels
        chans = [feat + self.class_channels + self.instance_channels, *self.hidden, self.image_shape[0]]
        for j, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            n += a * b * 16  # ConvTranspose k4 weights
            if j < len(chans) - 2 and self.norm == "instance":
                n += 2 * b  # norm affine (the conv's bias would be cancelled by the norm: none stored)
            else:
                n += b  # bias
        return n

    @property
    def floats_per_instance(self) -> int:
        return self.instance_channels * self.memory_size ** 2

    @property
    def total_floats(self) -> int:
        return self.shared_floats + self.num_classes * self.instances * self.floats_per_instance


def decoder_geometry(height: int, width: int) -> tuple[int, int]:
    """(memory side s, decoder layers L) with s * 2^L == side; see the module docstring."""
    if height != width:
        raise BudgetError(f"HMN needs square images, got {height}x{width}")
    for layers in (3, 2, 1):
        if height % 2 ** layers == 0 and height // 2 ** layers >= 2:
            return height // 2 ** layers, layers
    raise BudgetError(f"no HMN decoder for {height}x{width} images: the side must be even and >= 4")


def default_instance_channels(ipc: float, image_floats: int, memory_size: int) -> int:
    """Instance-memory channels that keep Table 7's compression per image.

    On CIFAR-10 an instance memory holds 1/96 of an image's floats at 1 IPC (2 channels),
    1/32 at 10 IPC (6) and 1/24 at 50 IPC (8); other shapes keep those ratios (at least one
    channel).
    """
    ratio = 96 if ipc < 5 else 32 if ipc < 30 else 24
    return max(1, round(image_floats / ratio / memory_size ** 2))


def _shape(num_classes, image_shape, tiers: Tiers, instance_channels, budget: float, norm) -> HMNShape:
    s, layers = decoder_geometry(image_shape[1], image_shape[2])
    base = HMNShape(num_classes, tuple(image_shape), 0, s, tiers.dataset_channels, tiers.class_channels,
                    instance_channels, tiers.fc_channels, tuple(tiers.hidden[:layers - 1]), norm)
    n = math.floor((budget - base.shared_floats) / (num_classes * base.floats_per_instance))
    return HMNShape(**{**asdict(base), "instances": max(n, 0)})


def _widest_decoder(shape: HMNShape, budget: float, max_instances: int) -> HMNShape:
    """`shape` with the widest DECODER_LADDER rung that still fits `max_instances` instances."""
    if not shape.hidden:  # a one-layer decoder (e.g. 30 px from 15x15 memories) has no width to widen
        return shape
    tiers = Tiers(shape.dataset_channels, shape.class_channels, shape.fc_channels, shape.hidden)
    best = shape
    for widths in DECODER_LADDER:
        if widths[0] <= shape.hidden[0]:
            continue
        wider = _shape(shape.num_classes, shape.image_shape, replace(tiers, hidden=widths),
                       shape.instance_channels, budget, shape.norm)
        if wider.instances >= max_instances:
            best = wider
    return best


def solve_hmn(image_shape: tuple[int, int, int], num_classes: int, ipc: float, *,
              instance_channels: int | None = None, over_budget: float = 0.0,
              norm: str = "instance", max_instances: int | None = None,
              hidden: tuple[int, ...] | None = None, widen_decoder: bool = False) -> HMNShape:
    """The HMN for `ipc` images-per-class of budget (plus `over_budget` more for instances).

    `hidden` replaces the chosen tiers' decoder widths (e.g. (32, 16) for a wider decoder at a
    large budget); the instances per class are then solved for what is left.

    `max_instances` (used when `instance_channels` is not given) caps the instances per class
    by widening each instance memory instead: fewer, richer images. The quick preset caps at
    its matching batch so that every instance is matched at every step (kinds/hmn.py, the presets).
    `widen_decoder` (with `max_instances`, without `hidden`) spends the capped surplus on the
    decoder first (module docstring).
    """
    explicit = instance_channels is not None
    c, h, w = image_shape
    budget = ipc * c * h * w * num_classes
    if budget <= 0:
        raise BudgetError(f"the budget must be positive, got ipc={ipc}")
    key = (c, h, num_classes, ipc)
    if key in TABLE7:
        tiers, ic, _ = TABLE7[key]
        candidates = [tiers]
        instance_channels = instance_channels or ic
    else:
        candidates = list(LADDER.values())
        instance_channels = instance_channels or default_instance_channels(
            ipc, c * h * w, decoder_geometry(h, w)[0])
    if hidden is not None:
        if not hidden or min(hidden) < 1:
            raise BudgetError(f"decoder widths must be positive, got {tuple(hidden)}")
        candidates = [replace(t, hidden=tuple(hidden)) for t in candidates]
    shapes = [_shape(num_classes, image_shape, t, instance_channels, budget, norm) for t in candidates]
    fitting = [s for s in shapes if s.instances >= 1]
    if not fitting:
        lean = shapes[-1]
        need = lean.shared_floats + num_classes * lean.floats_per_instance
        raise BudgetError(
            f"no HMN fits {ipc:g} IPC ({int(budget):,} floats) for {num_classes} classes of {c}x{h}x{w}: "
            f"the leanest HMN with one instance per class needs {need:,} floats "
            f"({need / (c * h * w * num_classes):.2f} IPC). Raise --ipc, or use --container pixel.")
    chosen = next((s for s in fitting if s.shared_floats <= SHARED_SHARE * budget), fitting[-1])
    if max_instances and not explicit:
        if max_instances < 1:
            raise BudgetError(f"max_instances must be >= 1, got {max_instances}")
        if widen_decoder and hidden is None and chosen.instances > max_instances:
            chosen = _widest_decoder(chosen, budget, max_instances)
        tiers = Tiers(chosen.dataset_channels, chosen.class_channels, chosen.fc_channels, chosen.hidden + (0,) * 3)
        while chosen.instances > max_instances:
            wider = _shape(num_classes, image_shape, tiers, chosen.instance_channels + 1, budget, norm)
            if wider.instances < 1:
                break
            chosen = wider
        instance_channels = chosen.instance_channels
    if over_budget:
        over = _shape(num_classes, image_shape, Tiers(chosen.dataset_channels, chosen.class_channels,
                                                      chosen.fc_channels, chosen.hidden + (0,) * 3),
                      instance_channels, budget * (1 + over_budget), norm)
        chosen = HMNShape(**{**asdict(chosen), "instances": over.instances})
    return chosen
