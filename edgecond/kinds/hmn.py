"""The HMN kind (HMN paper): its budget-solved shape, decoder parameter group, the quick preset's
warm start and wide-decoder rule, and its registration."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..budget import HMNShape, solve_hmn
from ..config import CondenseConfig, ConfigError, Shape, apply
from ..containers import HMN
from ..data import Dataset
from . import Kind, SizedConfig, register, storage_ipc, with_values

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


def hmn_shape(shape: Shape, cfg: SizedConfig, over_budget: float = 0.0) -> HMNShape:
    """The HMN `cfg` condenses at its values' worth: the solver, with the container section's rules."""
    hidden, widen = parse_decoder(cfg.container.decoder)
    return solve_hmn(shape.image_shape, shape.num_classes, cfg.values_ipc, over_budget=over_budget,
                     instance_channels=cfg.container.instance_channels,
                     max_instances=cfg.container.max_instances or None, hidden=hidden, widen_decoder=widen)


def build_hmn(data: Dataset, cfg: SizedConfig, gen: torch.Generator, over_budget: float = 0.0) -> HMN:
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
    cfg = with_values(cfg, storage_ipc(cfg))  # the values it will hold at its precision
    tiers = replace(cfg, container=replace(cfg.container, decoder="tiers"))
    return sum(hmn_shape(shape, cfg).hidden) > sum(hmn_shape(shape, tiers).hidden)


# quick, an int8 HMN of images larger than digits' (> 16 px) at budgets up to 1 IPC whose schedule
# nobody set: fit 64 fatter instances a class to the class's herding coreset and skip gradient
# matching. The accuracy-per-CPU-minute frontier's points (benchmarks/frontier.py, docs/results.md):
# at cifar10_mini 1 IPC (122,880 bytes) 51.8 % in 7.1 CPU-minutes (condensation seed 0; with bf16
# passes 51.0-51.4 % over 3 condensation seeds) where matching reached 50.1 % in 29.6; at 10 IPC
# the same schedule loses (52.8 % against matching's 56.7 %), so larger budgets keep matching.
HERDING_MAX_IPC = 1.0
HERDING_SCHEDULE = {"match.warm_targets": "herding", "container.max_instances": 64,
                    "match.outer": 1, "match.inner": 1}
# a setting of any of these is a schedule of the user's: the herding schedule stays out of it
SCHEDULE_KEYS = frozenset(HERDING_SCHEDULE) | {"match.warm_start", "match.syn_batch", "match.instance_sampling"}


def herding_schedule(cfg: CondenseConfig, shape: Shape, given: frozenset) -> bool:
    """Whether the quick preset's herding schedule (HERDING_SCHEDULE) is `cfg`'s."""
    return (cfg.preset == "quick" and cfg.precision == "int8" and shape.image_shape[-1] > 16
            and cfg.ipc <= HERDING_MAX_IPC and not given & SCHEDULE_KEYS)


def hmn_rule(cfg: CondenseConfig, shape: Shape, given: frozenset) -> CondenseConfig:
    """quick: a large-image int8 HMN at a small budget with no schedule given gets the herding
    schedule (HERDING_SCHEDULE). Then an HMN decoder wider than the tiers' (the capped surplus's, or one
    given) is an autoencoder fitted to real images -- it gets a 4x longer warm start (8x the
    weights to fit) and matching that moves the memories only (at the memories' rate matching
    pulled the fitted decoder off its images). Explicit settings always win."""
    if cfg.preset != "quick":
        return cfg
    if herding_schedule(cfg, shape, given):
        # the warm start fits instance i to the class's i-th herding choice, so the instances are
        # already in a herding prefix order: re-ordering them (~95 s on cifar10_mini) adds nothing
        cfg = apply(cfg, {**HERDING_SCHEDULE, **({} if "prefix_order" in given else {"prefix_order": "none"})})
    if not wide_decoder(shape, cfg):
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
