"""One typed configuration tree for a condensation run, and the presets that fill it.

    CondenseConfig
      kind, ipc, precision, preset, seed, dataset, classes
      container: ContainerConfig   how the container is shaped within the budget
      match:     MatchConfig       the gradient-matching schedule and its add-on loss terms
      prune:     PruneConfig       over-budget condensation and AUM pruning back
      prefix_order                 how instances are ordered after condensation
      eval:      EvalConfig        the protocol that judges the result

Every default lives here or in a kind's registration (`kinds/`), never in the CLI, so
`edgecond.condense(data, cfg)` and `edgecond condense` give the same container for the same
settings. `resolve_config` builds a tree in layers, each a dict of dotted keys:

  1. the dataclass defaults below (the papers' values);
  2. the preset's schedule for the image size (`SCHEDULES`);
  3. the kind's own preset (`Kind.presets`, e.g. the quick HMN's warm start and instance cap);
  4. what the user gave (`--config FILE`, `--set key=value`, keyword overrides);
  5. derived rules, for keys the user did not give: MDC's Delta t as a share of the schedule,
     the prefix order that follows multisize, and the kind's own rule (`Kind.rule`).

The resolved tree is written to a run directory as `config.json`; `--config` on that file
re-runs the same settings (everything in it counts as given, so no rule moves it).
docs/architecture.md shows where each part is used.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable

from edgecond_device.units import PRECISIONS

from .resources import COMPUTE_DTYPES


class ConfigError(ValueError):
    """A configuration key or value that does not exist or cannot work."""


@dataclass(frozen=True)
class ContainerConfig:
    """How a container is shaped within its budget (hmn options; other kinds ignore None/defaults)."""

    instance_channels: int | None = None  # hmn: channels of each instance memory (None: Table 7 / derived)
    max_instances: int | None = None      # hmn: at most this many images per class (None or 0: no cap)
    decoder: str = "tiers"                # hmn: 'tiers' (the solver's), 'surplus' (capped surplus widens it), '64x32'


@dataclass(frozen=True)
class MatchConfig:
    """The gradient-matching schedule (IDC Algorithm 1). Defaults: the HMN paper's (App. C.2)."""

    outer: int = 1000               # outer iterations, a fresh matching network each
    inner: int = 200                # inner iterations per outer one (one step per class each)
    net_steps: int = 30             # real-data SGD steps of the network after each inner iteration
    real_batch: int = 64            # real images per class step
    syn_batch: int = 128            # at most this many container images per class step
    instance_sampling: str = "random"  # random: a fresh draw each step | cycle: each outer iteration walks a
    #                                    permutation of the class's instances, syn_batch at a time (even visits)
    net_width: int = 128
    compute_dtype: str = "fp32"     # fp32 | bf16: the warm start's generator passes and the matching network's
    #                                 under bfloat16 autocast (faster where the hardware has bf16 units;
    #                                 matching gradients agree with fp32 to ~2 %: tests/test_compute_dtype.py)
    net_lr: float = 0.01
    optimizer: str = "adam"         # adam | sgd
    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    momentum: float = 0.5           # for sgd
    lr_milestones: tuple[float, ...] = (0.6, 0.8)  # fractions of `outer`; x0.1 at each
    distance: str = "mse"           # mse | l1 over conv-weight gradients
    checkpoint_every: int = 5
    explode_ratio: float = 1e4      # stop if an outer mean loss exceeds this x the first one
    update_mode: str = "sequential"  # sequential: a step per class (papers); summed: one per inner iteration
    warm_start: int = 0             # steps fitting the container to real images first (warmstart.py)
    warm_targets: str = "random"    # random: a seeded permutation of each class's images | herding: the
    #                                 herding coreset's images, in herding order (warmstart.py)
    warm_lr_schedule: str = "constant"  # constant | cosine: the warm start's Adam rate held, or annealed to 0
    decoder_lr: float = 1.0         # hmn: the decoder's matching rate as a multiple of `lr` (0 freezes it)
    # add-on loss terms (losses.py)
    multisize: bool = False         # MDC's adaptive subset loss (multisize.py)
    mls_interval: int = 50          # MDC's Delta t, in outer iterations (rule: MDC_INTERVAL_SHARE of `outer`)
    subset_shared: bool = False     # the subset loss also trains shared tiers (HMN decoder...); multisize.py
    haba_contrast: float = 0.0      # HaBa Sec. 3.2: weight of L_cos (paper 0.1); 0 = off (contrast.py)


@dataclass(frozen=True)
class PruneConfig:
    """Over-budget condensation, then pruning back by AUM (HMN Algorithm 1; pruning.py)."""

    method: str = "none"            # none | double-end | easy | random
    over_budget: float = 0.1        # with a method: this much more budget for instance memories
    betas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the paper's grid
    aum_steps: int = 10_000         # training steps of the AUM network
    aum_every: int = 20             # record margins every this many steps
    select_steps: int = 10_000      # training steps per beta candidate (val accuracy)
    protect: int = 0                # never prune the first `protect` instances (raised to the multisize prefix)


@dataclass(frozen=True)
class EvalConfig:
    """How a network is trained on condensed images. `epochs` wins over `steps` when set."""

    steps: int = 1000
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 0.01
    min_lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    width: int = 128
    depth: int | None = None
    cutmix_prob: float = 0.5
    augment: bool = True

    def num_steps(self, n_images: int) -> int:
        if self.epochs is not None:
            return self.epochs * max(1, math.ceil(n_images / self.batch_size))
        return self.steps


@dataclass(frozen=True)
class CondenseConfig:
    kind: str = "hmn"
    ipc: float = 1.0                # budget: the bytes of ipc x classes x C x H x W float32 values
    precision: str = "fp32"         # how the container is stored, and trained (quantise.py): fp32 | fp16 | int8
    preset: str = "quick"
    seed: int = 0                   # condensation and validation split
    dataset: str = "digits"         # what the CLI loads (the Python API takes a Dataset)
    classes: tuple[int, ...] | None = None
    container: ContainerConfig = field(default_factory=ContainerConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    prefix_order: str = "none"      # none | herding (multisize.herding_prefix_order)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


PRESETS = ("quick", "paper")
CHOICES = {"match.optimizer": ("adam", "sgd"), "match.distance": ("mse", "l1"),
           "match.update_mode": ("sequential", "summed"), "prune.method": ("none", "double-end", "easy", "random"),
           "prefix_order": ("none", "herding"), "match.instance_sampling": ("random", "cycle"),
           "match.warm_targets": ("random", "herding"),
           "match.warm_lr_schedule": ("constant", "cosine"), "match.compute_dtype": COMPUTE_DTYPES,
           "preset": PRESETS, "precision": PRECISIONS}
MDC_INTERVAL_SHARE = 0.05  # MDC: Delta t = 100 of 2000 outer iterations

# How a result is judged, per preset. quick: 1000 SGD steps (a digits seed in ~15 s on a CPU);
# paper: HMN paper App. C.2 (2000 epochs, SGD 0.01, momentum 0.9, weight decay 2e-4, cosine to 1e-4).
EVAL_PRESETS: dict[str, dict[str, Any]] = {"quick": {"steps": 1000}, "paper": {"epochs": 2000, "weight_decay": 2e-4}}

# Schedules every matching kind gets under a preset, by image size. quick: a width-64 matching
# network, digits-sized (<= 16 px) images 30 x 20 inner iterations (HMN 5 IPC in ~5 min), larger
# ones 20 x 10 (HMN CIFAR 1 IPC in ~30 min); Adam for every kind (with so few steps IDC's SGD
# barely moves the pixels); pruning sized for a CPU. paper: the papers' (the dataclass defaults;
# IDC's SGD schedule is in the pixel kinds' presets, kinds/pixels.py).
SCHEDULES: dict[str, Callable[[tuple], dict]] = {
    "quick": lambda shape: {
        "match.outer": 30 if shape[-1] <= 16 else 20, "match.inner": 20 if shape[-1] <= 16 else 10,
        "match.net_steps": 5, "match.net_width": 64,
        "prune.betas": (0.0, 0.2, 0.4, 0.6, 0.8), "prune.aum_steps": 600, "prune.select_steps": 400},
    "paper": lambda shape: {"match.checkpoint_every": 10},
}


def eval_config(preset: str = "quick", **overrides) -> EvalConfig:
    """The evaluation protocol of `preset`; overrides (None = not given) win."""
    if preset not in EVAL_PRESETS:
        raise ConfigError(f"unknown evaluation preset {preset!r}; choose {' or '.join(EVAL_PRESETS)}")
    return replace(EvalConfig(), **{**EVAL_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}})


# --------------------------------------------------------------------------- `edgecond continual`'s settings
# Here, beside condense's, so the CLI shows their defaults without importing Avalanche;
# edgecond/continual/config.py resolves and checks them.

NORMALISATIONS = ("first-experience", "none")  # the stream's: its first experience's statistics, or [0, 1] pixels
LOGGERS = ("text", "csv", "tensorboard")       # Avalanche's loggers `edgecond continual` can write
DEFAULT_STRATEGIES = ("naive", "replay", "replay-bytes", "herding", "lwf", "hmn", "hmn-lwf", "joint")


@dataclass(frozen=True)
class ContinualConfig:
    """What every strategy of a run shares (continual/config.py resolves it from the CLI's layers)."""

    experiences: int = 5
    ipc: float = 10.0                 # buffer budget per class, in images-per-class of float32
    epochs: int = 20                  # training epochs per experience
    batch_size: int = 64
    lr: float = 0.01
    width: int = 64
    lwf_alpha: float = 1.0
    lwf_temperature: float = 2.0
    preset: str = "quick"             # condensation preset for the HMN strategies
    device_budget: tuple[int, ...] = ()  # images per class replayed per experience
    condense_settings: dict = field(default_factory=dict)   # dotted config keys, e.g. {"match.outer": 2}
    normalise: str = "first-experience"  # the stream's: first experience's statistics, or none (pixels)
    loggers: tuple[str, ...] = ()                           # Avalanche loggers: text, csv, tensorboard
    log_dir: str | None = None                              # where they write (one folder per run)


@dataclass(frozen=True)
class ContinualRun:
    """Everything `edgecond continual` runs: written to OUT/config.json, read back by --config."""

    dataset: str = "digits"
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seeds: int = 1                                   # seeds 0..seeds-1 (class order and initialisation)
    continual: ContinualConfig = field(default_factory=ContinualConfig)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


# --------------------------------------------------------------------------- dotted keys

def leaf_keys(cls=CondenseConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of the tree -> its type annotation."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        t = hints[f.name]
        if is_dataclass(t):
            out.update(leaf_keys(t, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = t
    return out


LEAVES = leaf_keys()


def canonical_key(key: str) -> str:
    """'match.outer' stays; a unique leaf name ('outer', 'warm-start') is completed; else ConfigError."""
    key = key.strip().replace("-", "_")
    if key in LEAVES:
        return key
    hits = [k for k in LEAVES if k.rsplit(".", 1)[-1] == key]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ConfigError(f"{key!r} is ambiguous: say {' or '.join(hits)}")
    raise ConfigError(f"unknown setting {key!r}; settings are: {', '.join(sorted(LEAVES))}")


def _coerce(key: str, value: Any) -> Any:
    """A value (JSON, or the text of --set) as the type of `key`'s field."""
    return coerce_to(LEAVES[key], value, key)


def coerce_to(t: Any, value: Any, key: str) -> Any:
    """`value` (JSON, or the text of --set) as type `t` (int, float, bool, str, a tuple of one of
    them, or any of those | None); ConfigError names `key` otherwise. Tuples of numbers also take
    '64x32'; tuples of names split on commas only."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    optional = type(None) in typing.get_args(t)
    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} cannot be none")
    base = typing.get_origin(t) or t
    if base in (typing.Union, types.UnionType):
        base = typing.get_origin(args[0]) or args[0]
        args = list(typing.get_args(args[0]))
    try:
        if base is tuple:
            if isinstance(value, str):
                numeric = any(a in (int, float) for a in args)
                value = [v.strip() for v in (value.replace("x", ",") if numeric else value).split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                value = [value]
            inner = [a for a in args if a is not Ellipsis] or [float]
            return tuple(inner[0](v) if not isinstance(v, inner[0]) else v for v in value)
        if base is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
                return value.lower() in ("true", "yes", "on")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if base is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"{key}={value!r}: expected {getattr(t, '__name__', str(t))}")


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['match.outer=3', 'prefix_order=none'] -> {'match.outer': 3, 'prefix_order': 'none'}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        key = canonical_key(k)
        out[key] = _coerce(key, v)
    return out


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested dict (a config file) -> dotted keys, each checked and coerced."""
    out = {}
    for k, v in tree.items():
        section = f"{prefix}{k}."
        if isinstance(v, dict) and any(leaf.startswith(section) for leaf in LEAVES):
            out.update(flatten(v, section))
        else:
            key = canonical_key(f"{prefix}{k}")
            out[key] = _coerce(key, v)
    return out


def read_config_file(path) -> dict[str, Any]:
    """A JSON config file (e.g. a run's config.json) -> dotted keys."""
    try:
        tree = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config file {path} as JSON: {e}") from e
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must hold one JSON object")
    return flatten(tree)


def apply(cfg: CondenseConfig, values: dict[str, Any]) -> CondenseConfig:
    """`cfg` with dotted keys set (values already coerced)."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, v in values.items():
        if "." in key:
            section, leaf = key.split(".", 1)
            nested.setdefault(section, {})[leaf] = v
        else:
            top[key] = v
    for section, vals in nested.items():
        top[section] = replace(getattr(cfg, section), **vals)
    return replace(cfg, **top)


# --------------------------------------------------------------------------- resolution

@dataclass(frozen=True)
class Shape:
    """What rules may look at besides the settings: the data's image shape and class count."""

    image_shape: tuple[int, int, int]
    num_classes: int


def resolve_config(kind, ipc: float, *, image_shape, num_classes: int, preset: str = "quick",
                   overrides: dict[str, Any] | None = None, world_size: int = 1) -> CondenseConfig:
    """The full settings for condensing `kind` (a kinds.Kind) at `ipc` under `preset`.

    `overrides` are dotted keys (see module docstring) and always win over presets and rules.
    Validated: unknown values and combinations the kind cannot do raise ConfigError before
    any work starts.
    """
    given = {canonical_key(k): v for k, v in (overrides or {}).items()}
    given = {k: _coerce(k, v) for k, v in given.items()}
    preset = given.pop("preset", preset)
    given.pop("kind", None)
    given.pop("ipc", None)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose {' or '.join(PRESETS)}")
    shape = Shape(tuple(int(s) for s in image_shape), int(num_classes))
    layers = {**SCHEDULES[preset](shape.image_shape), **{f"eval.{k}": v for k, v in EVAL_PRESETS[preset].items()},
              **kind.presets.get(preset, {}), **given}
    cfg = apply(CondenseConfig(kind=kind.name, ipc=float(ipc), preset=preset), layers)
    derived: dict[str, Any] = {}
    if "match.mls_interval" not in given:
        derived["match.mls_interval"] = max(1, round(MDC_INTERVAL_SHARE * cfg.match.outer))
    if "prefix_order" not in given:
        derived["prefix_order"] = "herding" if cfg.match.multisize and kind.reorderable else "none"
    if "match.update_mode" not in given and world_size > 1:
        derived["match.update_mode"] = "summed"
    if cfg.container.max_instances == 0:
        derived["container.max_instances"] = None  # 0 means no cap
    cfg = apply(cfg, derived)
    check_values(cfg)  # before a kind's rule computes from them
    if kind.rule is not None:
        cfg = kind.rule(cfg, shape, frozenset(given))
    validate(cfg, kind, world_size)
    return cfg


def check_values(cfg: CondenseConfig) -> None:
    """Refuse a value that is not one of its choices, out of its range, or of the wrong length."""
    flat = _flat_values(cfg)
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key}={flat[key]!r}: choose one of {', '.join(choices)}")
    for key in BOUNDS:
        check_range(key, flat[key])
    for key, (fewest, most) in SEQUENCES.items():
        if flat[key] is not None and not fewest <= len(flat[key]) <= most:
            wanted = f"{fewest}" if fewest == most else f"{fewest} to {most:,}"
            raise ConfigError(f"{key} takes {wanted} values, got {len(flat[key])}")


def validate(cfg: CondenseConfig, kind, world_size: int = 1) -> None:
    """Refuse values out of range and what `kind` cannot do, with the setting to change."""
    check_values(cfg)
    m = cfg.match
    refuse = []
    if not kind.matched:
        refuse += [f"{k} (a {kind.name} container is selected, not condensed by matching)" for k, on in
                   (("match.multisize", m.multisize), ("prune.method", cfg.prune.method != "none"),
                    ("prefix_order", cfg.prefix_order != "none")) if on]
    if m.multisize and not kind.multisize:
        refuse.append("match.multisize (its instances have no per-instance parameters to freeze)")
    if cfg.prune.method != "none" and not kind.prunable:
        refuse.append(f"prune.method={cfg.prune.method} (its instances are not independent memories)")
    if cfg.prefix_order != "none" and not kind.reorderable:
        refuse.append(f"prefix_order={cfg.prefix_order} (its instances cannot be reordered)")
    unused = [f"container.{f.name}" for f in fields(ContainerConfig) if f.name not in kind.container_keys
              and getattr(cfg.container, f.name) != getattr(ContainerConfig(), f.name)]
    refuse += [f"{key} (its build does not read it)" for key in unused]
    if m.decoder_lr != 1.0 and kind.param_groups is None:
        refuse.append("match.decoder_lr (it has no decoder)")
    if m.haba_contrast and not kind.contrast:
        refuse.append("match.haba_contrast (HaBa's adversarial term needs hallucinators)")
    if m.haba_contrast and m.update_mode != "sequential":
        refuse.append("match.haba_contrast with match.update_mode=summed (sequential updates only)")
    if world_size > 1 and m.update_mode != "summed":
        refuse.append("match.update_mode=sequential across ranks (set match.update_mode=summed)")
    if refuse:
        raise ConfigError(f"the {kind.name} container cannot do: " + "; ".join(refuse))


# Every numeric setting's range: key -> (low, high, low excluded). A value outside -- 0 networks
# wide, a learning rate float32 cannot hold, an infinite budget -- is refused before any work,
# naming the setting. tests/test_untrusted.py checks that no numeric leaf is missing here.
_BIG = 1e9
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "ipc": (0, 1e6, True), "seed": (0, 2 ** 63 - 1, False),
    "container.instance_channels": (1, 4096, False), "container.max_instances": (0, 10 ** 6, False),
    "match.outer": (1, _BIG, False), "match.inner": (1, _BIG, False), "match.net_steps": (0, _BIG, False),
    "match.real_batch": (1, 10 ** 6, False), "match.syn_batch": (1, 10 ** 6, False),
    "match.net_width": (1, 4096, False), "match.net_lr": (0, 1e3, True), "match.lr": (0, 1e3, True),
    "match.betas": (0, 1, False), "match.momentum": (0, 1, False), "match.lr_milestones": (0, 1, False),
    "match.checkpoint_every": (1, _BIG, False), "match.explode_ratio": (1, 1e30, False),
    "match.warm_start": (0, _BIG, False), "match.decoder_lr": (0, 1e3, False), "match.mls_interval": (1, _BIG, False),
    "match.haba_contrast": (0, 1e3, False),
    "prune.over_budget": (0, 100, False), "prune.betas": (0, 1, False), "prune.aum_steps": (1, _BIG, False),
    "prune.aum_every": (1, _BIG, False), "prune.select_steps": (1, _BIG, False), "prune.protect": (0, 10 ** 6, False),
    "eval.steps": (1, _BIG, False), "eval.epochs": (1, 10 ** 6, False), "eval.batch_size": (1, 10 ** 6, False),
    "eval.lr": (0, 1e3, True), "eval.min_lr": (0, 1e3, False), "eval.momentum": (0, 1, False),
    "eval.weight_decay": (0, 1, False), "eval.width": (1, 4096, False), "eval.depth": (1, 16, False),
    "eval.cutmix_prob": (0, 1, False),
}
def check_range(key: str, value: Any) -> None:
    """ConfigError unless `value` (or each of a tuple's values) lies in BOUNDS[key]."""
    low, high, open_low = BOUNDS[key]
    for v in value if isinstance(value, tuple) else (value,):
        if v is None:
            continue
        if not math.isfinite(v) or v < low or (open_low and v == low) or v > high:
            low_text = f"> {low:g}" if open_low else f">= {low:g}"
            raise ConfigError(f"{key}={v!r} is out of range: it must be {low_text} and <= {high:g}")


# tuple-valued settings: key -> (fewest, most) values
SEQUENCES: dict[str, tuple[int, int]] = {"match.betas": (2, 2), "match.lr_milestones": (0, 100),
                                         "prune.betas": (1, 1000), "classes": (1, 100_000)}


def settings_digest(cfg: CondenseConfig) -> str:
    """8 hex digits naming what a run's results depend on: the kind, the budget and every setting
    whose resolved value differs from the dataclass default. A setting added later with a default
    that keeps the old behaviour leaves digests, and results kept under them, valid."""
    import hashlib

    base, values = _flat_values(CondenseConfig()), _flat_values(cfg)
    changed = {k: v for k, v in values.items() if v != base[k] or k in ("kind", "ipc")}
    return hashlib.sha1(json.dumps(changed, sort_keys=True, default=list).encode()).hexdigest()[:8]


def _flat_values(cfg: CondenseConfig) -> dict[str, Any]:
    out = {}
    for key in LEAVES:
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        out[key] = obj
    return out
