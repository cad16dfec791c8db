"""Gradient-matching condensation (IDC's Algorithm 1, as the HMN paper uses it).

For each outer iteration a fresh ConvNet is initialised; for each of `inner` iterations and
for each class c, a batch of real images of c and a batch of the container's images of c
pass through ONE shared augmentation draw, and the container takes one optimiser step on
the distance between the two batches' gradients of the network's conv weights (real
gradients detached, synthetic ones differentiated through). After each inner iteration the
network trains a few steps on real data (augmentation + CutMix), so the container is
matched along the early part of real training trajectories.

The per-class step is a pure function of (class, container, network, real batch, RNG):
that is what a future torch.distributed version shards across ranks.

Long runs are safe: every `checkpoint_every` outer iterations the state is written
atomically to `<out>/checkpoint.pt`; `resume=True` continues from it. Each outer
iteration draws its randomness from a generator seeded by (seed, outer index), so a
resumed run equals an uninterrupted one. Ctrl-C writes a checkpoint first. A NaN or an
exploding loss stops the run with a clear message and leaves the last checkpoint intact.
"""

from __future__ import annotations

import ast
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import Augment, cutmix
from .budget import solve_hmn
from .containers import Container, IDCContainer, PixelContainer
from .containers.hmn import HMN
from .contrast import HabaContrast
from .data import Dataset
from .io import atomic_write
from . import distributed as dist
from .models import build_convnet
from .multisize import MLSState, prefix_distances, trained_prefix
from .warmstart import warm_start

CHECKPOINT = "checkpoint.pt"


class ConvergenceError(RuntimeError):
    """The matching loss became NaN/inf or exploded."""


@dataclass(frozen=True)
class MatchConfig:
    outer: int                      # outer iterations, a fresh matching network each
    inner: int                      # inner iterations per outer one (one step per class each)
    net_steps: int                  # real-data SGD steps of the network after each inner iteration
    real_batch: int = 64            # real images per class step
    syn_batch: int = 128            # at most this many container images per class step
    net_width: int = 128
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
    multisize: bool = False         # MDC's adaptive subset loss (see multisize.py)
    mls_interval: int = 5           # MDC's Delta t, in outer iterations
    subset_shared: bool = False     # MDC subset loss also trains shared tiers (HMN decoder...); see multisize.py
    haba_contrast: float = 0.0      # HaBa Sec. 3.2: weight of L_cos (paper 0.1); 0 = off
    warm_start: int = 0             # steps fitting the container to real images first (warmstart.py)
    max_instances: int | None = None  # hmn: widen instance memories rather than exceed this per class
    widen_decoder: bool = False     # hmn: with max_instances, spend the capped surplus on the decoder first
    decoder_widths: tuple[int, ...] | None = None  # hmn: explicit decoder widths (None: the solver's)
    decoder_lr: float = 1.0         # hmn: the decoder's matching rate as a multiple of `lr` (0 freezes it)


MDC_INTERVAL_SHARE = 0.05  # MDC: Delta t = 100 of 2000 outer iterations
QUICK_WARM_START = 1000  # HMN's quick-preset warm start (warmstart.py); the paper preset starts from noise
# quick, for an HMN whose decoder is wider than its tiers' (match_config): cifar10_mini 10 IPC, 64x32
# decoder, 3 seeds -- 1000 warm steps + full matching 46.5 %, 4000 + full 47.3 %, 4000 + memories only 52.8 %
WIDE_DECODER_SCHEDULE = {"warm_start": 4 * QUICK_WARM_START, "decoder_lr": 0.0}


def match_config(preset: str, kind: str, image_shape, num_classes: int | None = None, ipc: float | None = None,
                 **overrides) -> MatchConfig:
    """The schedule for `kind` under `preset` ('quick' for a 2-core CPU, 'paper' for GPUs).

    quick: a width-64 matching network; digits-sized (<= 16 px) images get 30 x 20 inner
    iterations (HMN 5 IPC in ~5 min), larger ones 20 x 10 (HMN CIFAR 1 IPC in ~30 min), the
    schedule that already shows HMN's advantage (shared/notes/feasibility-cifar10-mini.md). Adam for
    every container: with so few steps IDC's SGD (lr 5e-3) barely moves the pixels.
    paper: HMN App. C.2 -- 1000 outer x 200 inner, Adam lr 0.01 betas (0.9, 0.99), x0.1 at
    600 and 800; pixel/idc: IDC -- 2000 x 100, SGD momentum 0.5, lr 5e-3. MDC's Delta t is 100
    of IDC's 2000 outer iterations (MDC_INTERVAL_SHARE); every preset keeps that share (quick:
    1 of 20 on cifar-sized images, 2 of 30 on digits), so the MLS is re-chosen as often
    relative to the schedule as in MDC. (Until 2026-11-23 quick used 4 of 20 and 5 of 30: the
    MLS was chosen three times in a cifar run and stayed at n = 1.)
    quick also warm-starts an HMN from real images (warmstart.py): 200 steps per class from
    random memories are too few for it; and it caps an HMN's instances per class at the
    matching batch (`max_instances`), so that every instance is matched at every step and
    reconstructed sharply by the warm start. Where the cap binds (cifar10_mini 10 IPC: Table 7
    has 278 instances) the budget it leaves goes to a wider decoder (`widen_decoder`: 64x32
    instead of 10x6, 115 instances of 9 channels) -- and a decoder wider than the tiers' (this
    rule's or `--decoder-widths`) gets WIDE_DECODER_SCHEDULE when `num_classes` and `ipc` are
    given: a 4x longer warm start (it has 8x the weights to fit) and matching that moves the
    memories only (at the memories' rate matching pulled the fitted decoder off its images).
    Measured in the README's containers table (`hmn-dectiers`: the cap's surplus in wider
    instance memories instead; `hmn-cold`: the paper's initialisation and shapes). Explicit
    `overrides` (None = not given) always win.
    """
    if preset == "quick":
        small = image_shape[-1] <= 16
        outer = 30 if small else 20
        cfg = MatchConfig(outer=outer, inner=20 if small else 10, net_steps=5, net_width=64,
                          mls_interval=max(1, round(MDC_INTERVAL_SHARE * outer)))
    elif preset == "paper":
        if kind == "hmn":
            cfg = MatchConfig(outer=1000, inner=200, net_steps=30, checkpoint_every=10, mls_interval=50)
        else:
            cfg = MatchConfig(outer=2000, inner=100, net_steps=30, optimizer="sgd", lr=5e-3,
                              checkpoint_every=20, mls_interval=100)
    else:
        raise ValueError(f"unknown preset {preset!r}; choose quick or paper")
    if preset == "quick" and kind == "hmn":
        cfg = replace(cfg, warm_start=QUICK_WARM_START, max_instances=cfg.syn_batch, widen_decoder=True)
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg = replace(cfg, **given)
    cfg = replace(cfg, max_instances=cfg.max_instances or None)  # 0 means no cap
    if preset == "quick" and kind == "hmn" and num_classes is not None and ipc is not None \
            and wide_decoder(image_shape, num_classes, ipc, cfg):
        cfg = replace(cfg, **{k: v for k, v in WIDE_DECODER_SCHEDULE.items() if k not in given})
    return cfg


def wide_decoder(image_shape, num_classes: int, ipc: float, cfg: MatchConfig) -> bool:
    """Whether `cfg` condenses an HMN whose decoder is wider than the budget solver's tiers'."""
    tiers = hmn_shape(image_shape, num_classes, ipc, replace(cfg, widen_decoder=False, decoder_widths=None))
    return sum(hmn_shape(image_shape, num_classes, ipc, cfg).hidden) > sum(tiers.hidden)


# --------------------------------------------------------------------------- containers

def _real_init(data: Dataset, n: int, gen: torch.Generator) -> torch.Tensor:
    """(classes, n, C, H, W) random real training images."""
    out = []
    for c in range(data.num_classes):
        x = data.class_images(c)
        out.append(x[torch.randint(len(x), (n,), generator=gen)])
    return torch.stack(out)


def hmn_shape(image_shape, num_classes: int, ipc: float, cfg: MatchConfig | None = None, *,
              instance_channels: int | None = None, over_budget: float = 0.0):
    """The HMN shape `cfg`'s schedule condenses for `ipc` (its instance cap and decoder rule)."""
    cfg = cfg or MatchConfig(outer=1, inner=1, net_steps=1)
    return solve_hmn(image_shape, num_classes, ipc, over_budget=over_budget, instance_channels=instance_channels,
                     max_instances=cfg.max_instances, hidden=cfg.decoder_widths, widen_decoder=cfg.widen_decoder)


def init_container(kind: str, data: Dataset, ipc: float, seed: int, over_budget: float = 0.0,
                   instance_channels: int | None = None, cfg: MatchConfig | None = None) -> Container:
    """A container of `kind` at its initial point: real images for pixel/idc, N(0, 0.5^2) memories for hmn.

    For hmn, `cfg` supplies the shape rules (instance cap, decoder widths; see hmn_shape)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "hmn":
        shape = hmn_shape(data.image_shape, data.num_classes, ipc, cfg, over_budget=over_budget,
                          instance_channels=instance_channels)
        cont = HMN(**shape.hmn_kwargs())
        cont.init_memories(gen)
        return cont
    if float(ipc) != int(ipc) or ipc < 1:
        raise ValueError(f"a {kind} container stores whole images: --ipc must be a whole number >= 1, got {ipc}")
    ipc = int(ipc)
    if kind == "pixel":
        cont = PixelContainer(data.num_classes, data.image_shape, ipc, kind="pixel")
        with torch.no_grad():
            cont.pixels.copy_(_real_init(data, ipc, gen))
        return cont
    if kind == "idc":
        cont = IDCContainer(data.num_classes, data.image_shape, ipc, factor=2)
        # IDC's "mix" init: each stored image tiles 4 real images downsized by 2
        real = _real_init(data, 4 * ipc, gen)  # (K, 4n, C, H, W)
        k, _, c, h, w = real.shape
        small = F.interpolate(real.flatten(0, 1), scale_factor=0.5, mode="bilinear", align_corners=False)
        small = small.view(k, 2, 2, ipc, c, h // 2, w // 2)  # (K, row, col, n, C, h, w)
        tiled = small.permute(0, 3, 4, 1, 5, 2, 6).reshape(k, ipc, c, h, w)
        with torch.no_grad():
            cont.pixels.copy_(tiled)
        return cont
    if kind == "haba":
        from .containers.haba import HaBa, solve_haba

        cont = HaBa(**solve_haba(data.image_shape, data.num_classes, ipc))
        real = _real_init(data, cont.n_bases, gen)
        if cont.base_factor > 1:
            k, n = real.shape[:2]
            real = F.avg_pool2d(real.flatten(0, 1), cont.base_factor).view(k, n, *cont.bases.shape[2:])
        with torch.no_grad():
            cont.bases.copy_(real)
            nn_init = torch.randn(cont.enc_weight.shape, generator=gen) * 0.1
            cont.enc_weight.copy_(nn_init)
        return cont
    raise ValueError(f"{kind!r} is not condensed by gradient matching (hmn, pixel, idc, haba)")


# --------------------------------------------------------------------------- the loop

def gradient_distance(g_syn: list[torch.Tensor], g_real: list[torch.Tensor], kind: str) -> torch.Tensor:
    if kind == "mse":
        return sum(((a - b) ** 2).sum() for a, b in zip(g_syn, g_real))
    if kind == "l1":
        return sum((a - b).abs().sum() for a, b in zip(g_syn, g_real))
    raise ValueError(f"unknown distance {kind!r}; choose mse or l1")


def class_step_loss(container: Container, net, real: torch.Tensor, c: int, syn_idx: torch.Tensor,
                    aug: Augment, gen: torch.Generator, distance: str, measure: int = 0, own: bool = False):
    """The gradient-matching loss of class c: one shared augmentation, conv-weight gradients.

    With measure=m > 0 also returns the feature distances d_1..d_m of the first m synthetic
    images' prefixes to the real batch (MDC Eq. 5, detached): (loss, distances).
    own=True: the loss trains only the images' own parameters (Container.generate_own).
    """
    cls = torch.full((len(syn_idx),), c, dtype=torch.long, device=syn_idx.device)
    syn = container.generate_own(cls, syn_idx) if own else container.generate(cls, syn_idx)
    both = aug(torch.cat([real, syn]), generator=gen, shared=True)
    xr, xs = both[:len(real)], both[len(real):]
    params = net.conv_weights()
    yr = torch.full((len(xr),), c, dtype=torch.long, device=xr.device)
    fr, fs = net.embed(xr), net.embed(xs)
    g_real = torch.autograd.grad(F.cross_entropy(net.classifier(fr), yr), params, retain_graph=measure > 0)
    g_real = [g.detach() for g in g_real]
    g_syn = torch.autograd.grad(F.cross_entropy(net.classifier(fs), cls), params, create_graph=True)
    loss = gradient_distance(g_syn, g_real, distance)
    if measure:
        return loss, prefix_distances(fr.detach(), fs[:measure].detach())
    return loss


def param_groups(container: Container, cfg: MatchConfig) -> list[dict]:
    """The optimiser's parameter groups: an HMN's decoder at `decoder_lr` x `lr`, the rest at `lr`.

    Why a separate rate: once a warm start has fitted a wide decoder to real images, matching
    at the memories' rate moved it away from them (cifar10_mini 10 IPC, README #3)."""
    if cfg.decoder_lr < 0:
        raise ValueError(f"--decoder-lr must be >= 0, got {cfg.decoder_lr}")
    decoder = getattr(container, "decoder", None)
    dec = [p for p in decoder.parameters() if p.requires_grad] if decoder is not None else []
    ids = {id(p) for p in dec}
    rest = [p for p in container.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest}]
    if dec:
        groups.append({"params": dec, "lr": cfg.lr * cfg.decoder_lr})
    return groups


class Matcher:
    """Runs the matching loop on one container; owns optimiser, schedule and checkpoints."""

    def __init__(self, container: Container, data: Dataset, cfg: MatchConfig, seed: int = 0,
                 device: str = "cpu", out: str | Path | None = None):
        self.container, self.data, self.cfg, self.seed = container.to(device), data, cfg, seed
        self.device, self.out = device, Path(out) if out is not None else None
        params = param_groups(container, cfg)
        if cfg.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
        elif cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
        milestones = sorted({max(1, int(f * cfg.outer)) for f in cfg.lr_milestones})
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=milestones, gamma=0.1)
        if cfg.update_mode not in ("sequential", "summed"):
            raise ValueError(f"unknown update mode {cfg.update_mode!r}; choose sequential or summed")
        if dist.world_size() > 1 and cfg.update_mode != "summed":
            raise ValueError("condensing across ranks needs --update-mode summed (one step per inner iteration)")
        self.aug = Augment(flip=data.flip)
        self.owned = dist.owned_classes(data.num_classes)
        self.start = 0
        self.mls = MLSState(candidates=self._candidates()) if cfg.multisize else None
        self.losses: list[float] = []
        self.seconds = 0.0
        # each rank keeps the real data of its own classes only
        self.by_class = {c: data.class_images(c).to(device) for c in dist.owned_classes(data.num_classes)}
        self.contrast = (HabaContrast(container, data.image_shape, data.num_classes, cfg.net_width, seed=seed,
                                      update_mode=cfg.update_mode, device=device)
                         if cfg.haba_contrast > 0 else None)
        lo = (0 - torch.tensor(data.mean)) / torch.tensor(data.std)
        hi = (1 - torch.tensor(data.mean)) / torch.tensor(data.std)
        self.pixel_range = (lo.view(-1, 1, 1).to(device), hi.view(-1, 1, 1).to(device))

    def _candidates(self) -> int:
        """Subset sizes eligible as MLS: 1..N-1, or the always-present prefix of a full batch."""
        n = self.container.instances_per_class
        return n - 1 if n <= self.cfg.syn_batch else self.cfg.syn_batch // 2

    # -- checkpoints ------------------------------------------------------------------
    def state(self, outer: int) -> dict:
        st = {"outer": outer, "container": self.container.state_dict(), "optimizer": self.opt.state_dict(),
              "scheduler": self.sched.state_dict(), "losses": torch.tensor(self.losses, dtype=torch.float64),
              "seconds": self.seconds, "seed": self.seed, "config": json.dumps(asdict(self.cfg))}
        if self.mls is not None:
            st["mls"] = self.mls.state_dict()
        if self.contrast is not None:
            st.update(self.contrast.state_dict())
        return st

    def save_checkpoint(self, outer: int) -> Path | None:
        if self.out is None or not dist.is_main():
            return None
        path = self.out / CHECKPOINT
        st = self.state(outer)
        atomic_write(path, lambda tmp: torch.save(st, tmp))
        return path

    def load_checkpoint(self) -> bool:
        path = self.out / CHECKPOINT if self.out is not None else None
        if path is None or not path.is_file():
            return False
        st = torch.load(path, map_location=self.device, weights_only=True)  # tensors only, no code
        differ = self._config_differences(st["config"])
        if differ or st["seed"] != self.seed:
            raise ValueError(f"{path} was written by a run with other settings ({', '.join(differ) or 'seed'}); "
                             f"remove it or match them (seed {st['seed']}, config {st['config']})")
        self.container.load_state_dict(st["container"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.losses = [float(v) for v in st["losses"]]
        self.seconds, self.start = float(st["seconds"]), int(st["outer"])
        if self.mls is not None:
            self.mls = MLSState.from_state_dict(st["mls"])
        if self.contrast is not None:
            self.contrast.load_state_dict(st)
        return True

    def _config_differences(self, saved: str) -> list[str]:
        """Settings that differ from a checkpoint's; fields it predates count when not at their default."""
        try:
            old = json.loads(saved)
        except json.JSONDecodeError:
            old = ast.literal_eval(saved)  # checkpoints of edgecond 0.1.0 dev builds (a literal, never code)
        now = json.loads(json.dumps(asdict(self.cfg)))
        defaults = json.loads(json.dumps(asdict(MatchConfig(outer=1, inner=1, net_steps=1))))
        old = json.loads(json.dumps(old))
        ignore = {"mls_interval"} if not now["multisize"] and not old.get("multisize", False) else set()
        return sorted(k for k in now if k not in ignore and (old[k] if k in old else defaults[k]) != now[k])

    # -- one outer iteration ----------------------------------------------------------
    def _generator(self, outer: int) -> torch.Generator:
        s = self.seed * 1_000_003 + outer
        torch.manual_seed(s)  # the network's initialisation
        return torch.Generator().manual_seed(s)

    def _syn_indices(self, gen: torch.Generator) -> torch.Tensor:
        k, b = self.container.instances_per_class, self.cfg.syn_batch
        if k <= b:
            return torch.arange(k, device=self.device)
        if self.mls is None:
            return torch.randperm(k, generator=gen)[:b].to(self.device)
        head = b // 2  # MLS candidates ride in every batch, in order (see multisize.py)
        rest = head + torch.randperm(k - head, generator=gen)[:b - head]
        return torch.cat([torch.arange(head), rest]).to(self.device)

    def _step(self, loss: torch.Tensor) -> None:
        """One optimiser step; the frozen multisize prefix (if any) is left exactly as it was."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self._apply_step()

    def _train_net(self, net, net_opt, gen: torch.Generator) -> None:
        x, y = self.data.x_train, self.data.y_train
        for _ in range(self.cfg.net_steps):
            idx = torch.randint(len(x), (self.cfg.real_batch,), generator=gen)
            xb = self.aug(x[idx].to(self.device), generator=gen)
            xb, ya, yb, lam = cutmix(xb, y[idx].to(self.device), generator=gen)
            out = net(xb)
            loss = lam * F.cross_entropy(out, ya) + (1 - lam) * F.cross_entropy(out, yb)
            net_opt.zero_grad(set_to_none=True)
            loss.backward()
            net_opt.step()

    def outer_iteration(self, outer: int) -> float:
        if self.cfg.update_mode == "summed":
            return self._outer_summed(outer)
        gen = self._generator(outer)
        net = build_convnet(self.data.image_shape, self.data.num_classes, width=self.cfg.net_width).to(self.device)
        net_opt = torch.optim.SGD(net.parameters(), lr=self.cfg.net_lr, momentum=0.9, weight_decay=5e-4)
        total, count = 0.0, 0
        for _ in range(self.cfg.inner):
            net.train()
            for c in range(self.data.num_classes):
                real_c = self.by_class[c]
                real = real_c[torch.randint(len(real_c), (self.cfg.real_batch,), generator=gen)]
                loss, step_loss = self._class_losses(net, real, c, gen)
                self._step(step_loss)
                total, count = total + loss.item(), count + 1
            if self.contrast is not None:
                self.contrast.step(gen)
            self._train_net(net, net_opt, gen)
        self._project()
        self.sched.step()
        if self.mls is not None and (outer + 1) % self.cfg.mls_interval == 0:
            self.mls.end_period(outer + 1)
        return total / max(1, count)

    # -- the summed update mode (the same for 1 and N ranks) -----------------------------
    def _outer_summed(self, outer: int) -> float:
        self._generator(outer)  # seeds the network's initialisation, identically on every rank
        net = build_convnet(self.data.image_shape, self.data.num_classes, width=self.cfg.net_width).to(self.device)
        net_opt = torch.optim.SGD(net.parameters(), lr=self.cfg.net_lr, momentum=0.9, weight_decay=5e-4)
        params = [p for p in self.container.parameters() if p.requires_grad]
        stats = torch.zeros(2, dtype=torch.float64)  # loss sum, class steps
        for inner in range(self.cfg.inner):
            net.train()
            self.opt.zero_grad(set_to_none=True)
            for c in self.owned:
                gen = dist.generator(self.seed, outer, inner, "match", c)
                real_c = self.by_class[c]
                real = real_c[torch.randint(len(real_c), (self.cfg.real_batch,), generator=gen)]
                loss, step_loss = self._class_losses(net, real, c, gen)
                step_loss.backward()
                stats += torch.tensor([loss.item(), 1.0], dtype=torch.float64)
            dist.all_reduce_grads_(params)
            self._apply_step()
            self._train_net_summed(net, net_opt, outer, inner)
        self._project()
        self.sched.step()
        if self.mls is not None and (outer + 1) % self.cfg.mls_interval == 0:
            self.mls.end_period(outer + 1, reduce=dist.all_reduce_sum_)
        dist.all_reduce_sum_([stats])
        return float(stats[0] / max(1.0, float(stats[1])))

    def _class_losses(self, net, real, c, gen):
        """(base matching loss, loss to back-propagate) of class c, with the MLS subset term if on."""
        syn_idx = self._syn_indices(gen)
        extra = self.cfg.haba_contrast * self.contrast.term(c, gen) if self.contrast is not None else 0.0
        if self.mls is None:
            loss = class_step_loss(self.container, net, real, c, syn_idx, self.aug, gen, self.cfg.distance)
            return loss, loss + extra
        loss, d = class_step_loss(self.container, net, real, c, syn_idx, self.aug, gen, self.cfg.distance,
                                  measure=self.mls.candidates)
        self.mls.observe(d)
        subset = torch.arange(self.mls.mls, device=self.device)
        subset_loss = class_step_loss(self.container, net, real, c, subset, self.aug, gen, self.cfg.distance,
                                      own=not self.cfg.subset_shared)
        return loss, loss + subset_loss + extra

    def _train_net_summed(self, net, net_opt, outer: int, inner: int) -> None:
        """Data-parallel real-data steps: per-class sub-batches, summed gradients (no CutMix across ranks)."""
        k = self.data.num_classes
        per_class = max(1, self.cfg.real_batch // k)
        for step in range(self.cfg.net_steps):
            net_opt.zero_grad(set_to_none=True)
            for c in self.owned:
                gen = dist.generator(self.seed, outer, inner, "net", step, c)
                real_c = self.by_class[c]
                xb = self.aug(real_c[torch.randint(len(real_c), (per_class,), generator=gen)], generator=gen)
                yb = torch.full((per_class,), c, dtype=torch.long, device=self.device)
                (F.cross_entropy(net(xb), yb, reduction="sum") / (per_class * k)).backward()
            dist.all_reduce_grads_(list(net.parameters()))
            net_opt.step()

    def _apply_step(self) -> None:
        """Optimiser step on accumulated gradients; the frozen multisize prefix stays as it was."""
        frozen = self.mls.frozen_now if self.mls is not None else 0
        saved = [(p, sl, p.data[:, sl].clone()) for p, sl in self.container.frozen_slices(frozen)] if frozen else []
        self.opt.step()
        with torch.no_grad():
            for p, sl, value in saved:
                p.data[:, sl] = value

    @torch.no_grad()
    def _project(self) -> None:
        """Pixel containers stay valid images: clamp to the [0, 1] pixel range (IDC)."""
        if isinstance(self.container, (PixelContainer, IDCContainer)):  # (HaBa's bases are codes: free)
            lo, hi = self.pixel_range
            self.container.pixels.copy_(torch.maximum(torch.minimum(self.container.pixels, hi), lo))

    def _check(self, outer: int, loss: float) -> None:
        where = f"at outer iteration {outer + 1}"
        saved = f"; the last good checkpoint is {self.out / CHECKPOINT}" if self.out else ""
        if not math.isfinite(loss):
            raise ConvergenceError(f"matching loss became {loss} {where}{saved}. Lower the learning rate.")
        if self.losses and loss > self.cfg.explode_ratio * max(self.losses[0], 1e-12):
            raise ConvergenceError(f"matching loss exploded to {loss:.3g} (first {self.losses[0]:.3g}) "
                                   f"{where}{saved}. Lower the learning rate.")

    def run(self, progress: bool = True, stop_after: int | None = None) -> list[float]:
        """Run (or continue) the schedule; `stop_after` ends early after that many outer iterations."""
        end = self.cfg.outer if stop_after is None else min(self.cfg.outer, stop_after)
        bar = tqdm(range(self.start, end), initial=self.start, total=self.cfg.outer, desc="condense",
                   disable=None if progress and dist.is_main() else True, file=sys.stderr)
        outer = self.start
        try:
            for outer in bar:
                dist.maybe_fail(outer)
                t0 = time.time()
                loss = self.outer_iteration(outer)
                self._check(outer, loss)
                self.losses.append(loss)
                self.seconds += time.time() - t0
                bar.set_postfix(loss=f"{loss:.4g}")
                if (outer + 1) % self.cfg.checkpoint_every == 0 or outer + 1 == end:
                    self.save_checkpoint(outer + 1)
        except KeyboardInterrupt:
            path = self.save_checkpoint(outer)
            raise KeyboardInterrupt(f"interrupted; checkpoint written to {path}: rerun with --resume") from None
        finally:
            bar.close()
        self.start = end
        return self.losses


def start_matcher(kind: str, data: Dataset, ipc: float, cfg: MatchConfig, *, seed: int = 0, device: str = "cpu",
                  out: str | Path | None = None, resume: bool = False, over_budget: float = 0.0,
                  instance_channels: int | None = None) -> tuple[Matcher, bool, dict]:
    """A Matcher at the start of its schedule: the container initialised (and warm-started), or
    restored from `out`'s checkpoint when `resume`. Returns (matcher, resumed, warm-start report)."""
    container = init_container(kind, data, ipc, seed, over_budget=over_budget, instance_channels=instance_channels,
                               cfg=cfg)
    m = Matcher(container, data, cfg, seed=seed, device=device, out=out)
    resumed = bool(resume and m.load_checkpoint())
    warm = {"steps": cfg.warm_start, "skipped": "resumed from a checkpoint"} if resumed else \
        warm_start(m.container, data, cfg.warm_start, seed=seed, device=device)
    return m, resumed, warm


def condense_matching(data: Dataset, kind: str, ipc: float, *, seed: int = 0, device: str = "cpu",
                      out: str | Path | None = None, progress: bool = True, preset: str = "quick",
                      resume: bool = False, over_budget: float = 0.1, prune: str = "none",
                      instance_channels: int | None = None, prefix_order: str = "none", **overrides):
    """Initialise a `kind` container for `ipc`, condense it, and prune it back if asked.

    With prune != 'none' (HMN only) the container is condensed with `over_budget` more
    budget for instance memories and pruned back to the in-budget count (HMN Algorithm 1).
    prefix_order='herding' then re-orders each class's instances behind the trained prefix
    (multisize.herding_prefix_order). Returns (container, per-class instance order, report section).
    """
    from .pruning import prune_config, prune_container

    pcfg = prune_config(preset, prune)
    if prefix_order not in ("herding", "none"):
        raise ValueError(f"unknown prefix order {prefix_order!r}; choose herding or none")
    if prune != "none" and kind != "hmn":
        raise ValueError(f"--prune {prune} needs --container hmn (instances of {kind} are not independent memories)")
    over = over_budget if prune != "none" else 0.0
    cfg = match_config(preset, kind, data.image_shape, data.num_classes, ipc, **overrides)
    m, resumed, warm = start_matcher(kind, data, ipc, cfg, seed=seed, device=device, out=out, resume=resume,
                                     over_budget=over, instance_channels=instance_channels)
    container = m.container
    if resume and not resumed:
        print(f"no checkpoint in {out}; starting from scratch", file=sys.stderr)
    m.run(progress=progress)
    from .condense import peak_rss_mb

    rss = peak_rss_mb()
    report = {"match_config": asdict(cfg), "preset": preset, "loss_curve": m.losses,
              "matching_seconds": round(m.seconds, 2), "resumed": bool(resumed), "over_budget": over,
              "warm_start": warm,
              "world_size": dist.world_size(), "rank_peak_rss_mb": dist.gather_float(rss),
              "rank_matching_seconds": dist.gather_float(m.seconds)}
    if m.mls is not None:
        report["multisize"] = {"mls_history": m.mls.history, "frozen": m.mls.frozen, "final_mls": m.mls.mls}
        pcfg = replace(pcfg, protect=trained_prefix(m.mls.frozen, m.mls.mls))  # pruning never breaks a trained subset
    order = [list(range(container.instances_per_class)) for _ in range(data.num_classes)]
    if prune != "none" and dist.is_main():  # pruning reads the whole train split: rank 0 alone
        target = hmn_shape(data.image_shape, data.num_classes, ipc, cfg, instance_channels=instance_channels).instances
        t0 = time.time()
        pcfg = replace(pcfg, protect=min(pcfg.protect, target - 1))
        report["pruning"] = prune_container(container, target, data, pcfg, seed=seed, device=device)
        report["pruning"]["seconds"] = round(time.time() - t0, 2)
        order = report["pruning"].pop("kept")
    if prefix_order == "herding" and dist.is_main():  # like pruning: rank 0 alone, it writes the file
        from .multisize import herding_prefix_order

        protect = pcfg.protect if m.mls is not None else 0
        t0 = time.time()
        perm = herding_prefix_order(container, data, protect=protect, seed=seed, device=device, progress=progress)
        container.select_instances(perm)
        order = [[order[c][j] for j in perm[c].tolist()] for c in range(data.num_classes)]
        report["prefix_order"] = {"method": "herding", "protect": protect, "seconds": round(time.time() - t0, 2)}
    return container, order, report
