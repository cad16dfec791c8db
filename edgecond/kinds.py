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

A kind's `build` sizes its container for `cfg.ipc` float32 images' worth of values and knows
nothing of storage precision: `sized_config` hands it the IPC at which the container, stored at
`cfg.precision`, fits the byte budget (fp16 gets 2x the values, int8 about 4x less its scales),
and `stored_as` makes the container read its values as stored from then on.

The CLI's choices, the benchmarks and the tests read `KINDS`; config.validate refuses a
combination a kind cannot do before any work starts. A new kind is one `register(Kind(...))`
call -- tests/test_registry.py defines one inside the test file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .budget import HMNShape, ipc_bytes, solve_hmn
from .config import CondenseConfig, ConfigError, Shape, apply
from .containers import Container, HMN, IDCContainer, PixelContainer
from .containers.haba import HaBa, solve_haba
from .coreset import herding_coreset, random_coreset
from .data import Dataset
from .quantise import BYTES_PER_VALUE


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
    in_budget_instances: Callable[[Shape, CondenseConfig], int] | None = None  # prunable kinds
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


def sized_config(kind: Kind, data: Dataset, cfg: CondenseConfig) -> CondenseConfig:
    """`cfg` with `ipc` replaced by the values' worth `kind.build` sizes for, so that the container
    stored at `cfg.precision` fits the byte budget: `storage_ipc`, shrunk while int8's per-channel
    scales and fp32 vectors push it over (a few percent). fp32 and fp16 fit at once, so an fp32
    budget builds exactly the container it always did."""
    limit = budget_bytes(cfg, Shape(data.image_shape, data.num_classes))
    ipc = storage_ipc(cfg)
    for _ in range(100):
        sized = replace(cfg, ipc=ipc)
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


# --------------------------------------------------------------------------- hmn

def parse_decoder(spec: str) -> tuple[tuple[int, ...] | None, bool]:
    """ContainerConfig.decoder -> (explicit widths or None, widen with the capped surplus)."""
    if spec in ("tiers", "surplus"):
        return None, spec == "surplus"
    try:
        widths = tuple(int(w) for w in str(spec).lower().split("x"))
    except ValueError:
        raise ConfigError(f"container.decoder: expected widths like 64x32, 'surplus' or 'tiers', got {spec!r}")
    if not widths or min(widths) < 1:
        raise ConfigError(f"container.decoder: widths must be positive, got {spec!r}")
    return widths, False


def hmn_shape(shape: Shape, cfg: CondenseConfig, over_budget: float = 0.0) -> HMNShape:
    """The HMN `cfg` condenses at its budget: the solver, with the container section's rules."""
    hidden, widen = parse_decoder(cfg.container.decoder)
    return solve_hmn(shape.image_shape, shape.num_classes, cfg.ipc, over_budget=over_budget,
                     instance_channels=cfg.container.instance_channels,
                     max_instances=cfg.container.max_instances or None, hidden=hidden, widen_decoder=widen)


def build_hmn(data: Dataset, cfg: CondenseConfig, gen: torch.Generator, over_budget: float = 0.0) -> HMN:
    shape = hmn_shape(Shape(data.image_shape, data.num_classes), cfg, over_budget)
    cont = HMN(**shape.hmn_kwargs())
    cont.init_memories(gen)
    return cont


def hmn_param_groups(container: HMN, decoder_lr: float) -> list[dict]:
    """The decoder at `decoder_lr` x the matching rate, the rest at the rate (lr set by the loop).

    Why a separate rate: once a warm start has fitted a wide decoder to real images, matching
    at the memories' rate moved it away from them (docs/results.md, cifar10_mini 10 IPC)."""
    dec = [p for p in container.decoder.parameters() if p.requires_grad]
    ids = {id(p) for p in dec}
    rest = [p for p in container.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": rest}] + ([{"params": dec, "lr_scale": decoder_lr}] if dec else [])


QUICK_WARM_START = 1000
# quick, for an HMN whose decoder is wider than its tiers' (hmn_rule): cifar10_mini 10 IPC, 64x32
# decoder, 3 seeds -- 1000 warm steps + full matching 46.5 %, 4000 + full 47.3 %, 4000 + memories only
# 52.8 % (docs/results.md)
WIDE_DECODER_SCHEDULE = {"match.warm_start": 4 * QUICK_WARM_START, "match.decoder_lr": 0.0}


def wide_decoder(shape: Shape, cfg: CondenseConfig) -> bool:
    """Whether `cfg` condenses an HMN whose decoder is wider than the budget solver's tiers'."""
    cfg = replace(cfg, ipc=storage_ipc(cfg))  # the values it will hold at its precision
    tiers = replace(cfg, container=replace(cfg.container, decoder="tiers"))
    return sum(hmn_shape(shape, cfg).hidden) > sum(hmn_shape(shape, tiers).hidden)


def hmn_rule(cfg: CondenseConfig, shape: Shape, given: frozenset) -> CondenseConfig:
    """quick: an HMN decoder wider than the tiers' (the capped surplus's, or one given) is an
    autoencoder fitted to real images -- it gets a 4x longer warm start (8x the weights to fit)
    and matching that moves the memories only (at the memories' rate matching pulled the fitted
    decoder off its images). Explicit settings always win."""
    if cfg.preset != "quick" or not wide_decoder(shape, cfg):
        return cfg
    return apply(cfg, {k: v for k, v in WIDE_DECODER_SCHEDULE.items() if k not in given})


register(Kind(
    name="hmn", cls=HMN, build=build_hmn,
    description="hierarchical memory network: dataset, class and instance memories + one shared decoder",
    multisize=True, reorderable=True, prunable=True, param_groups=hmn_param_groups,
    container_keys=("instance_channels", "max_instances", "decoder"),
    in_budget_instances=lambda shape, cfg: hmn_shape(shape, cfg).instances,
    # quick: warm-start from real images (~200 matching steps per class are too few from noise)
    # and cap instances at the matching batch so every instance is matched at every step; the
    # capped surplus widens the decoder (budget.py). Both presets: MDC's multisize loss.
    presets={"quick": {"match.warm_start": QUICK_WARM_START, "container.max_instances": 128,
                       "container.decoder": "surplus", "match.multisize": True},
             "paper": {"match.multisize": True}},
    rule=hmn_rule))


# --------------------------------------------------------------------------- pixels

def build_pixel(data: Dataset, cfg: CondenseConfig, gen: torch.Generator, over_budget: float = 0.0):
    ipc = whole_ipc("pixel", cfg.ipc)
    cont = PixelContainer(data.num_classes, data.image_shape, ipc, kind="pixel")
    with torch.no_grad():
        cont.pixels.copy_(real_images(data, ipc, gen))
    return cont


def build_idc(data: Dataset, cfg: CondenseConfig, gen: torch.Generator, over_budget: float = 0.0):
    """IDC's "mix" init: each stored image tiles 4 real images downsized by 2."""
    ipc = whole_ipc("idc", cfg.ipc)
    cont = IDCContainer(data.num_classes, data.image_shape, ipc, factor=2)
    real = real_images(data, 4 * ipc, gen)  # (K, 4n, C, H, W)
    k, _, c, h, w = real.shape
    small = F.interpolate(real.flatten(0, 1), scale_factor=0.5, mode="bilinear", align_corners=False)
    small = small.view(k, 2, 2, ipc, c, h // 2, w // 2)  # (K, row, col, n, C, h, w)
    tiled = small.permute(0, 3, 4, 1, 5, 2, 6).reshape(k, ipc, c, h, w)
    with torch.no_grad():
        cont.pixels.copy_(tiled)
    return cont


def build_haba(data: Dataset, cfg: CondenseConfig, gen: torch.Generator, over_budget: float = 0.0):
    try:
        cont = HaBa(**solve_haba(data.image_shape, data.num_classes, cfg.ipc))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    real = real_images(data, cont.n_bases, gen)
    if cont.base_factor > 1:
        k, n = real.shape[:2]
        real = F.avg_pool2d(real.flatten(0, 1), cont.base_factor).view(k, n, *cont.bases.shape[2:])
    with torch.no_grad():
        cont.bases.copy_(real)
        cont.enc_weight.copy_(torch.randn(cont.enc_weight.shape, generator=gen) * 0.1)
    return cont


# IDC's schedule (2000 x 100, SGD momentum 0.5, lr 5e-3) for the image-storing kinds
IDC_PAPER = {"match.outer": 2000, "match.inner": 100, "match.optimizer": "sgd", "match.lr": 5e-3,
             "match.checkpoint_every": 20}

register(Kind(name="pixel", cls=PixelContainer, build=build_pixel, description="IDC-I: images as parameters",
              multisize=True, reorderable=True, project=clamp_pixels, presets={"paper": IDC_PAPER}))
register(Kind(name="idc", cls=IDCContainer, build=build_idc,
              description="IDC multi-formation: each stored image yields 4 crops",
              multisize=True, project=clamp_pixels, presets={"paper": IDC_PAPER}))
register(Kind(name="haba", cls=HaBa, build=build_haba,
              description="HaBa: bases x hallucinators (hallucinators counted in the budget)",
              multisize=True, contrast=True, presets={"paper": IDC_PAPER}))


# --------------------------------------------------------------------------- real-image coresets

def select_random(data: Dataset, cfg: CondenseConfig, device: str = "cpu", progress: bool = True):
    return random_coreset(data, whole_ipc("random", cfg.ipc), seed=cfg.seed)


def select_herding(data: Dataset, cfg: CondenseConfig, device: str = "cpu", progress: bool = True):
    return herding_coreset(data, whole_ipc("herding", cfg.ipc), seed=cfg.seed, device=device, progress=progress)


register(Kind(name="random", cls=PixelContainer, build=select_random, matched=False,
              description="real training images chosen at random (baseline)"))
register(Kind(name="herding", cls=PixelContainer, build=select_herding, matched=False,
              description="real training images chosen by herding toward the class mean (baseline)"))
