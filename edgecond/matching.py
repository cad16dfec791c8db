"""The gradient-matching loop (IDC's Algorithm 1, as the HMN paper uses it).

For each outer iteration a fresh ConvNet is initialised; for each of `inner` iterations and
for each class c, the container takes an optimiser step on class c's matching loss
(losses.py) plus its add-on terms; after each inner iteration the network trains a few steps
on real data (augmentation + CutMix), so the container is matched along the early part of
real training trajectories.

Two update rules share everything else: `sequential` (the papers': one step per class) and
`summed` (one step per inner iteration on the summed class losses, all-reduced across ranks,
so 1 and N processes agree). Each outer iteration draws its randomness from generators seeded
by (seed, outer index), so a resumed run equals an uninterrupted one.

Long runs are safe: every `checkpoint_every` outer iterations the state is written atomically
(checkpoint.py); Ctrl-C writes one first. A NaN or an exploding loss stops the run with a
clear message and leaves the last checkpoint intact. Progress: a tqdm bar on a terminal, a
log line every ~30 s otherwise (progress.py).
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint
from . import distributed as dist
from .augment import Augment, cutmix
from .config import CondenseConfig
from .containers import Container
from .contrast import HabaContrast
from .data import Dataset
from .kinds import Kind, default_param_groups, get
from .losses import ClassStep, LossTerm, class_step_loss, phase
from .models import build_convnet
from .multisize import SubsetLoss
from .progress import Progress


class ConvergenceError(RuntimeError):
    """The matching loss became NaN/inf or exploded."""


def loss_terms(container: Container, data: Dataset, cfg: CondenseConfig, device: str = "cpu") -> list[LossTerm]:
    """The add-on terms `cfg.match` switches on, in the order the loop calls them."""
    m, terms = cfg.match, []
    if m.haba_contrast > 0:
        terms.append(HabaContrast(container, data.image_shape, data.num_classes, m.net_width, seed=cfg.seed,
                                  weight=m.haba_contrast, update_mode=m.update_mode, device=device))
    if m.multisize:
        terms.append(SubsetLoss(container.instances_per_class, m.syn_batch, m.mls_interval, m.subset_shared))
    return terms


def optimizer(container: Container, kind: Kind, cfg: CondenseConfig):
    """The container's optimiser (its kind's parameter groups) and step-decay schedule."""
    m = cfg.match
    groups = (kind.param_groups or default_param_groups)(container, m.decoder_lr)
    for g in groups:
        g["lr"] = m.lr * g.pop("lr_scale", 1.0)
    if m.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=m.lr, betas=m.betas)
    else:
        opt = torch.optim.SGD(groups, lr=m.lr, momentum=m.momentum)
    milestones = sorted({max(1, int(f * m.outer)) for f in m.lr_milestones})
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)


class Matcher:
    """Runs the matching loop on one container; owns optimiser, schedule, add-on terms and checkpoints."""

    def __init__(self, container: Container, data: Dataset, cfg: CondenseConfig, *, device: str = "cpu",
                 out: str | Path | None = None, over_budget: float = 0.0, kind: Kind | None = None):
        self.container, self.data, self.cfg, self.m = container.to(device), data, cfg, cfg.match
        self.kind = kind or get(cfg.kind)
        self.seed, self.device, self.out = cfg.seed, device, Path(out) if out is not None else None
        self.over_budget = over_budget
        self.opt, self.sched = optimizer(container, self.kind, cfg)
        self.aug = Augment(flip=data.flip)
        self.owned = dist.owned_classes(data.num_classes)
        self.terms = loss_terms(container, data, cfg, device)
        self.start, self.losses, self.seconds = 0, [], 0.0
        self._at = (0, 0)  # (outer, inner) iteration the loop is in: instance_sampling=cycle reads it
        # each rank keeps the real data of its own classes only
        self.by_class = {c: data.class_images(c).to(device) for c in self.owned}
        lo = (0 - torch.tensor(data.mean)) / torch.tensor(data.std)
        hi = (1 - torch.tensor(data.mean)) / torch.tensor(data.std)
        self.pixel_range = (lo.view(-1, 1, 1).to(device), hi.view(-1, 1, 1).to(device))

    # -- checkpoints ------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out / checkpoint.CHECKPOINT if self.out is not None else None

    def state(self, outer: int) -> dict:
        st = {"outer": outer, "container": self.container.state_dict(), "optimizer": self.opt.state_dict(),
              "scheduler": self.sched.state_dict(), "losses": torch.tensor(self.losses, dtype=torch.float64),
              "seconds": self.seconds, "settings": json.dumps(self.identity())}
        for t in self.terms:
            st.update(t.state_dict())
        return st

    def identity(self) -> dict:
        """What a checkpoint must have been written under to be resumed (checkpoint.identity)."""
        return checkpoint.identity(self.cfg, self.over_budget)

    def save_checkpoint(self, outer: int) -> Path | None:
        if self.out is None or not dist.is_main():
            return None
        return checkpoint.save(self.checkpoint_path, self.state(outer))

    def load_checkpoint(self) -> bool:
        st = checkpoint.load(self.checkpoint_path, self.identity(), self.device) if self.out is not None else None
        if st is None:
            return False
        try:
            self.container.load_state_dict(st["container"])
            self.opt.load_state_dict(st["optimizer"])
            self.sched.load_state_dict(st["scheduler"])
            self.losses = [float(v) for v in st["losses"]]
            self.seconds, self.start = float(st["seconds"]), int(st["outer"])
            for t in self.terms:
                t.load_state_dict(st)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a tensor of another shape, a missing entry
            raise checkpoint.CheckpointError(
                f"{self.checkpoint_path} does not fit this run ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:160] if str(e) else ''}); delete it, or run without --resume") from None
        return True

    # -- pieces of an outer iteration -------------------------------------------------
    def _generator(self, outer: int) -> torch.Generator:
        s = self.seed * 1_000_003 + outer
        torch.manual_seed(s)  # the network's initialisation
        return torch.Generator().manual_seed(s)

    def _network(self):
        net = build_convnet(self.data.image_shape, self.data.num_classes, width=self.m.net_width).to(self.device)
        return net, torch.optim.SGD(net.parameters(), lr=self.m.net_lr, momentum=0.9, weight_decay=5e-4)

    def _syn_indices(self, c: int, gen: torch.Generator) -> torch.Tensor:
        """The class step's container images: all of them when they fit the batch, else an add-on
        term's choice, else `syn_batch` of them -- drawn afresh (`random`), or (`cycle`) the next
        `syn_batch` of a permutation drawn per (seed, outer iteration, class), so that within an
        outer iteration every instance is matched as often as any other, however many the budget
        holds. Both depend on the step alone, so a resumed run draws the same."""
        k, b = self.container.instances_per_class, self.m.syn_batch
        if k <= b:
            return torch.arange(k, device=self.device)
        for t in self.terms:
            idx = t.syn_indices(k, b, gen)
            if idx is not None:
                return idx.to(self.device)
        if self.m.instance_sampling == "cycle":
            outer, inner = self._at
            perm = torch.randperm(k, generator=dist.generator(self.seed, outer, "instances", c))
            return perm[(inner * b + torch.arange(b)) % k].to(self.device)
        return torch.randperm(k, generator=gen)[:b].to(self.device)

    def _real_batch(self, c: int, n: int, gen: torch.Generator) -> torch.Tensor:
        real_c = self.by_class[c]
        return real_c[torch.randint(len(real_c), (n,), generator=gen)]

    def _class_losses(self, net, c: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(base matching loss, loss to back-propagate) of class c with every add-on term."""
        real = self._real_batch(c, self.m.real_batch, gen)
        syn_idx = self._syn_indices(c, gen)
        before = [t.before_class(c, gen) for t in self.terms]
        step = ClassStep(self.container, net, real, c, gen, self.aug, self.m.distance, self.m.compute_dtype)
        features = max((t.features for t in self.terms), default=0)
        if features:
            step.loss, step.real_features, step.syn_features = class_step_loss(
                self.container, net, real, c, syn_idx, self.aug, gen, self.m.distance, features=features,
                compute_dtype=self.m.compute_dtype)
        else:
            step.loss = class_step_loss(self.container, net, real, c, syn_idx, self.aug, gen, self.m.distance,
                                        compute_dtype=self.m.compute_dtype)
        total = step.loss
        for t in self.terms:
            extra = t.after_class(step)
            total = total + extra if isinstance(extra, torch.Tensor) else total
        for extra in before:
            total = total + extra if isinstance(extra, torch.Tensor) else total
        return step.loss, total

    def class_step(self, net, c: int, gen: torch.Generator) -> float:
        """One sequential class step: the loss of class c, its backward pass, an optimiser step;
        returns the base matching loss."""
        loss, step_loss = self._class_losses(net, c, gen)
        self.opt.zero_grad(set_to_none=True)
        with phase("matching backward"):
            step_loss.backward()
        with phase("optimiser"):
            self._apply_step()
        return loss.item()

    def _apply_step(self) -> None:
        """Optimiser step on accumulated gradients; the frozen prefix (add-on terms) stays as it was."""
        frozen = max((t.frozen_prefix() for t in self.terms), default=0)
        saved = [(p, sl, p.data[:, sl].clone()) for p, sl in self.container.frozen_slices(frozen)] if frozen else []
        self.opt.step()
        with torch.no_grad():
            for p, sl, value in saved:
                p.data[:, sl] = value

    @phase("network steps")
    def _train_net(self, net, net_opt, gen: torch.Generator) -> None:
        x, y = self.data.x_train, self.data.y_train
        for _ in range(self.m.net_steps):
            idx = torch.randint(len(x), (self.m.real_batch,), generator=gen)
            xb = self.aug(x[idx].to(self.device), generator=gen)
            xb, ya, yb, lam = cutmix(xb, y[idx].to(self.device), generator=gen)
            out = net(xb)
            loss = lam * F.cross_entropy(out, ya) + (1 - lam) * F.cross_entropy(out, yb)
            net_opt.zero_grad(set_to_none=True)
            loss.backward()
            net_opt.step()

    def _train_net_summed(self, net, net_opt, outer: int, inner: int) -> None:
        """Data-parallel real-data steps: per-class sub-batches, summed gradients (no CutMix across ranks)."""
        k = self.data.num_classes
        per_class = max(1, self.m.real_batch // k)
        for step in range(self.m.net_steps):
            net_opt.zero_grad(set_to_none=True)
            for c in self.owned:
                gen = dist.generator(self.seed, outer, inner, "net", step, c)
                xb = self.aug(self._real_batch(c, per_class, gen), generator=gen)
                yb = torch.full((per_class,), c, dtype=torch.long, device=self.device)
                (F.cross_entropy(net(xb), yb, reduction="sum") / (per_class * k)).backward()
            dist.all_reduce_grads_(list(net.parameters()))
            net_opt.step()

    def _end_outer(self, outer: int, reduce=None) -> None:
        if self.kind.project is not None:
            self.kind.project(self.container, self.pixel_range)
        self.sched.step()
        for t in self.terms:
            t.after_outer(outer, reduce)

    # -- the two update rules ---------------------------------------------------------
    def outer_sequential(self, outer: int) -> float:
        gen = self._generator(outer)
        net, net_opt = self._network()
        total, count = 0.0, 0
        for inner in range(self.m.inner):
            self._at = (outer, inner)
            net.train()
            for c in range(self.data.num_classes):
                total, count = total + self.class_step(net, c, gen), count + 1
            for t in self.terms:
                t.after_inner(gen)
            self._train_net(net, net_opt, gen)
        self._end_outer(outer)
        return total / max(1, count)

    def outer_summed(self, outer: int) -> float:
        self._generator(outer)  # seeds the network's initialisation, identically on every rank
        net, net_opt = self._network()
        params = [p for p in self.container.parameters() if p.requires_grad]
        stats = torch.zeros(2, dtype=torch.float64)  # loss sum, class steps
        for inner in range(self.m.inner):
            self._at = (outer, inner)
            net.train()
            self.opt.zero_grad(set_to_none=True)
            for c in self.owned:
                loss, step_loss = self._class_losses(net, c, dist.generator(self.seed, outer, inner, "match", c))
                step_loss.backward()
                stats += torch.tensor([loss.item(), 1.0], dtype=torch.float64)
            dist.all_reduce_grads_(params)
            self._apply_step()
            self._train_net_summed(net, net_opt, outer, inner)
        self._end_outer(outer, reduce=dist.all_reduce_sum_)
        dist.all_reduce_sum_([stats])
        return float(stats[0] / max(1.0, float(stats[1])))

    def outer_iteration(self, outer: int) -> float:
        return (self.outer_summed if self.m.update_mode == "summed" else self.outer_sequential)(outer)

    def _check(self, outer: int, loss: float) -> None:
        where = f"at outer iteration {outer + 1}"
        saved = f"; the last good checkpoint is {self.checkpoint_path}" if self.out else ""
        if not math.isfinite(loss):
            raise ConvergenceError(f"matching loss became {loss} {where}{saved}. Lower the learning rate.")
        if self.losses and loss > self.m.explode_ratio * max(self.losses[0], 1e-12):
            raise ConvergenceError(f"matching loss exploded to {loss:.3g} (first {self.losses[0]:.3g}) "
                                   f"{where}{saved}. Lower the learning rate.")

    def run(self, progress: bool = True, stop_after: int | None = None) -> list[float]:
        """Run (or continue) the schedule; `stop_after` ends early after that many outer iterations.

        Ctrl-C checkpoints the last *completed* iteration (a copy kept between checkpoints), never
        the half-updated container of the interrupted one, so resuming equals not stopping."""
        end = self.m.outer if stop_after is None else min(self.m.outer, stop_after)
        bar = Progress("condense", total=self.m.outer, initial=self.start, enabled=progress and dist.is_main())
        unsaved = None  # (outer, state) of the last completed iteration not yet checkpointed
        try:
            for outer in range(self.start, end):
                dist.maybe_fail(outer)
                t0 = time.time()
                loss = self.outer_iteration(outer)
                self._check(outer, loss)
                self.losses.append(loss)
                self.seconds += time.time() - t0
                bar.update(loss=f"{loss:.4g}")
                if (outer + 1) % self.m.checkpoint_every == 0 or outer + 1 == end:
                    self.save_checkpoint(outer + 1)
                    unsaved = None
                elif self.out is not None:
                    unsaved = (outer + 1, copy.deepcopy(self.state(outer + 1)))
        except KeyboardInterrupt:
            if unsaved is not None and dist.is_main():
                checkpoint.save(self.checkpoint_path, unsaved[1])
            where = (f"checkpoint {self.checkpoint_path}: rerun with --resume"
                     if self.checkpoint_path is not None and self.checkpoint_path.is_file() else "no checkpoint")
            raise KeyboardInterrupt(f"interrupted; {where}") from None
        finally:
            bar.close()
        self.start = end
        return self.losses

    def report(self) -> dict:
        out: dict = {}
        for t in self.terms:
            out.update(t.report())
        return out
