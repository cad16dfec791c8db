"""The container registry: every kind of container, found by name, and what it can do.

One `Kind` registration carries everything edgecond needs to know about a kind:

* `cls`        the Container subclass that rebuilds it from a file (`io.load_container`);
* `build`      how it is shaped within a budget and initialised: (data, cfg, generator,
               over_budget) -> Container, or for a selected kind (`matched=False`) the
               selection itself: (data, cfg, device, progress) -> (container, instance order);
* `project`    what keeps it valid after each matching step (pixels clamped to [0, 1]);
* `param_groups` how its parameters are grouped for the optimiser;
* capabilities: `matched` (condensed by gradient matching), `multisize` (its first n instances
  own parameters that can be frozen), `reorderable`, `prunable`, `contrast`;
* `container_keys` the container-shape settings its build reads;
* `presets`    named data: dotted config keys per preset (config.py's layer 3);
* `rule`       a derived default computed from the budget (config.py's layer 5).

A kind's `build` gets a `SizedConfig`: the run's config (`ipc` is the budget, float32 images
per class, everywhere) and `values_ipc`, the images' worth of values the container holds so
that, stored at `cfg.precision`, it fits the byte budget (fp16 gets 2x the values, int8 about 4x
less its scales). `sized_config` computes it; the build knows nothing else of storage precision,
and `stored_as` makes the container read its values as stored from then on.

The CLI's choices, the benchmarks and the tests read `KINDS`; config.validate refuses a
combination a kind cannot do before any work starts. A new kind is one `register(Kind(...))`
call -- tests/test_registry.py defines one inside the test file. This module is the registry's
core; each built-in kind registers itself in its own module (hmn.py; pixels.py: pixel, idc,
haba; coresets.py: random, herding), imported below in that order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import torch

from ..budget import ipc_bytes
from ..config import CondenseConfig, ConfigError, Shape
from ..containers import Container
from ..data import Dataset
from ..quantise import BYTES_PER_VALUE


@dataclass(frozen=True)
class SizedConfig(CondenseConfig):
    """A run's config and what a kind's build sizes for: `values_ipc` images' worth of values per
    class at `precision`. `ipc` keeps its one meaning, the byte budget in float32 images."""

    values_ipc: float = 0.0


def with_values(cfg: CondenseConfig, values_ipc: float) -> SizedConfig:
    return SizedConfig(**{f.name: getattr(cfg, f.name) for f in fields(CondenseConfig)}, values_ipc=values_ipc)


@dataclass(frozen=True)
class Kind:
    name: str
    cls: type[Container]
    build: Callable[..., Any]
    description: str = ""
    matched: bool = True
    multisize: bool = False
    reorderable: bool = False
    prunable: bool = False
    contrast: bool = False
    project: Callable[[Container, tuple[torch.Tensor, torch.Tensor]], None] | None = None
    param_groups: Callable[[Container, float], list[dict]] | None = None
    in_budget_instances: Callable[[Shape, SizedConfig], int] | None = None  # prunable kinds
    container_keys: tuple[str, ...] = ()  # the ContainerConfig fields its build reads (others are refused)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    rule: Callable[[CondenseConfig, Shape, frozenset], CondenseConfig] | None = None


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add a kind; returns it. A name already registered is refused: a kind is replaced only
    on purpose (`KINDS[name] = kind`), never by a second registration that shadows the first."""
    if kind.name in KINDS:
        raise ValueError(f"a container kind named {kind.name!r} is already registered")
    if kind.prunable and kind.in_budget_instances is None:
        raise ValueError(f"kind {kind.name!r} is prunable but has no in_budget_instances")
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> Kind:
    if name not in KINDS:
        raise ConfigError(f"unknown container kind {name!r}; choose one of {', '.join(KINDS)}")
    return KINDS[name]


def names(matched: bool | None = None) -> list[str]:
    return [k for k, v in KINDS.items() if matched is None or v.matched == matched]


def build_from_file(kind: str, config: dict) -> Container:
    """The container a file's metadata describes, with its parameters at their initial values."""
    return get(kind).cls(**config)


def whole_ipc(kind: str, ipc: float) -> int:
    """The whole images per class that fit `ipc` images' worth of values (a byte budget rarely
    divides into whole images: the most that fit)."""
    n = math.floor(float(ipc) + 1e-9)
    if n < 1:
        raise ConfigError(f"a {kind} container stores whole images: the budget ({ipc:g} images' worth per class "
                          "at its precision) holds less than one")
    return n


# --------------------------------------------------------------------------- bytes

def storage_ipc(cfg: CondenseConfig) -> float:
    """The budget as images' worth of values at `cfg.precision`: `cfg.ipc` counts float32 images
    (4 bytes a value), so fp16 stores 2x the values and int8 4x (before its scales)."""
    return cfg.ipc * BYTES_PER_VALUE["fp32"] / BYTES_PER_VALUE[cfg.precision]


def budget_bytes(cfg: CondenseConfig, shape: Shape) -> int:
    """The byte budget: `cfg.ipc` float32 images per class."""
    return ipc_bytes(cfg.ipc, shape.image_shape, shape.num_classes)


def stored_as(container: Container, cfg: CondenseConfig, data: Dataset) -> Container:
    """From now on `container` generates from its values as stored at `cfg.precision` (the
    matching and the warm start train through the rounding; quantise.py)."""
    container.precision = cfg.precision
    container.pixel_stats = ([float(m) for m in data.mean], [float(s) for s in data.std])
    return container


def sized_config(kind: Kind, data: Dataset, cfg: CondenseConfig) -> SizedConfig:
    """`cfg` with the values' worth `kind.build` sizes for, so that the container stored at
    `cfg.precision` fits the byte budget: `storage_ipc`, shrunk while int8's per-channel scales
    and fp32 vectors push it over (a few percent). fp32 and fp16 fit at once, so an fp32 budget
    builds exactly the container it always did."""
    limit = budget_bytes(cfg, Shape(data.image_shape, data.num_classes))
    ipc = storage_ipc(cfg)
    for _ in range(100):
        sized = with_values(cfg, ipc)
        if not kind.matched:
            return sized  # whole real images: no scales, the count is the floor of the values' worth
        probe = stored_as(kind.build(data, sized, torch.Generator().manual_seed(0)), cfg, data)
        stored = probe.stored_bytes()
        if stored <= limit:
            return sized
        ipc *= min(0.995, limit / stored)
    raise ConfigError(f"no {kind.name} container stored at {cfg.precision} fits {limit:,} bytes")


def real_images(data: Dataset, n: int, gen: torch.Generator) -> torch.Tensor:
    """(classes, n, C, H, W) random real training images."""
    out = []
    for c in range(data.num_classes):
        x = data.class_images(c)
        out.append(x[torch.randint(len(x), (n,), generator=gen)])
    return torch.stack(out)


def default_param_groups(container: Container, decoder_lr: float) -> list[dict]:
    return [{"params": [p for p in container.parameters() if p.requires_grad]}]


@torch.no_grad()
def clamp_pixels(container: Container, pixel_range: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Pixel containers stay valid images: clamp to the [0, 1] pixel range (IDC)."""
    lo, hi = pixel_range
    container.pixels.copy_(torch.maximum(torch.minimum(container.pixels, hi), lo))


# --------------------------------------------------------------------------- the built-in kinds

from . import hmn  # noqa: E402,F401 - registers hmn
from . import pixels  # noqa: E402,F401 - registers pixel, idc, haba
from . import coresets  # noqa: E402,F401 - registers random, herding
from .hmn import HERDING_SCHEDULE, QUICK_WARM_START, WIDE_DECODER_SCHEDULE, hmn_shape  # noqa: E402,F401
