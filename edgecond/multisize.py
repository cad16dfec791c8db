"""Multisize condensation (MDC, He et al.): every prefix of a class's instances is a good set.

Subset S_[n] is the first n instances of every class. Plain condensation makes small
subsets poor ("subset degradation"); MDC adds, to the base matching loss, the matching loss
of one subset -- the Most Learnable Subset (MLS) -- chosen as follows (MDC Eq. 5-10):

* feature distance d_n: squared L2 distance between the batch-mean features of the real
  images and of S_[n] (the matching network's last conv block), measured on the augmented
  matching batches and averaged over the classes and steps of a period of `interval`
  outer iterations (Eq. 5);
* the MLS is the n whose distance changed most over the last period,
  argmax_n |d_n(t) - d_n(t - interval)| (Eq. 8-9); it is forced to n=1 until two
  measurements exist;
* freezing (Eq. 10, as MDC's code applies it): an MLS that has served its period is frozen
  for good; at each step the largest frozen subset smaller than the current MLS is not
  updated at all -- neither by the base loss nor by the subset loss -- so a grown MLS never
  degrades the smaller one it contains. When the MLS shrinks below every frozen size,
  everything is updated.

What the subset loss trains: only the subset's own parameters (Container.generate_own). For
pixel containers that is MDC itself; for an HMN it means the subset's instance memories, while
the dataset memory, f_c, class memories and decoder enter the subset loss detached. Letting the
one-image subset loss (MLS n = 1 for most of a short schedule) move the shared decoder too
(`--set match.subset_shared=true`) changes every image of the class for the sake of
one: on cifar10_mini 1 IPC it cost the full 85-image HMN 9.9 points (docs/results.md, multisize table).

What "frozen" means for an HMN: the frozen instances' own parameters (their instance-level
memories) stay fixed; the shared tiers (dataset memory, f_c, decoder) serve every image and
keep learning, so a frozen image may still drift a little. For pixel containers the frozen
images are fixed exactly; for IDC the stored images that hold the frozen crops are fixed.

Prefix order after condensation (`herding_prefix_order`, `prefix_order=herding`). The MLS
rule trains the smallest prefixes; the order of the other instances is whatever the
container had. Herding (as for real-image coresets, coreset.py) can order them instead: per
class the trained prefix stays first and the rest follow greedily so that each prefix's mean
feature (a ConvNet trained briefly on the real train split) approaches the real class mean.
It changes no parameter, only which instances a device asking for k per class gets.

When a class has more instances than a synthetic batch holds, every batch carries the first
half-batch of instances in order (the MLS candidates, so their prefixes are always measured
and matched) plus a random sample of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .losses import ClassStep, LossTerm, class_step_loss


def prefix_distances(feat_real: torch.Tensor, feat_syn: torch.Tensor) -> torch.Tensor:
    """d_n = ||mean(feat_real) - mean(feat_syn[:n])||^2 for n = 1..len(feat_syn) (MDC Eq. 5)."""
    means = feat_syn.cumsum(0) / torch.arange(1, len(feat_syn) + 1, device=feat_syn.device)[:, None]
    return ((means - feat_real.mean(0)) ** 2).sum(1)


def select_mls(d_now: torch.Tensor, d_prev: torch.Tensor) -> int:
    """The subset size whose feature distance changed most (MDC Eq. 8-9); sizes start at 1."""
    return int(torch.argmax((d_now - d_prev).abs())) + 1


def trained_prefix(frozen: list[int], mls: int) -> int:
    """The largest subset the subset loss trained: what pruning and prefix ordering keep first."""
    return max(frozen + [mls])


def frozen_size(frozen: list[int], mls: int) -> int:
    """The largest frozen subset smaller than the current MLS (0: nothing frozen)."""
    return max((f for f in frozen if f < mls), default=0)


@dataclass
class MLSState:
    """The MLS bookkeeping of one condensation run (checkpointed with it)."""

    candidates: int                     # subset sizes 1..candidates are measured and eligible
    mls: int = 1
    frozen: list[int] = field(default_factory=list)
    prev: torch.Tensor | None = None    # d at the previous period boundary
    acc: torch.Tensor | None = None     # running sum of d over the current period
    count: int = 0
    history: list[list[int]] = field(default_factory=list)  # [outer, mls, frozen size]

    def observe(self, d: torch.Tensor) -> None:
        d = d[:self.candidates].detach().double().cpu()
        self.acc = d if self.acc is None else self.acc + d
        self.count += 1

    def end_period(self, outer: int, reduce=None) -> None:
        """At a period boundary: average d, pick the next MLS, freeze the one that served.

        `reduce` sums tensors across ranks in place (torch.distributed), so every rank
        averages the distances of all classes and picks the same MLS.
        """
        if reduce is not None:
            acc = self.acc if self.acc is not None else torch.zeros(self.candidates, dtype=torch.float64)
            n = torch.tensor([float(self.count)], dtype=torch.float64)
            reduce([acc, n])
            self.acc, self.count = acc, int(n.item())
        if self.count == 0:
            return
        d = self.acc / self.count
        if self.prev is not None:
            new = select_mls(d, self.prev)
            if new != self.mls and self.mls not in self.frozen:
                self.frozen.append(self.mls)
            self.mls = new
        self.prev, self.acc, self.count = d, None, 0
        self.history.append([outer, self.mls, frozen_size(self.frozen, self.mls)])

    @property
    def frozen_now(self) -> int:
        return frozen_size(self.frozen, self.mls)

    def state_dict(self) -> dict:
        empty = torch.zeros(0, dtype=torch.float64)
        return {"candidates": self.candidates, "mls": self.mls, "frozen": torch.tensor(self.frozen, dtype=torch.long),
                "prev": self.prev if self.prev is not None else empty,
                "acc": self.acc if self.acc is not None else empty, "count": self.count,
                "history": torch.tensor(self.history, dtype=torch.long).view(-1, 3)}

    @classmethod
    def from_state_dict(cls, st: dict) -> "MLSState":
        return cls(candidates=int(st["candidates"]), mls=int(st["mls"]), frozen=st["frozen"].tolist(),
                   prev=st["prev"] if len(st["prev"]) else None, acc=st["acc"] if len(st["acc"]) else None,
                   count=int(st["count"]), history=st["history"].tolist())


class SubsetLoss(LossTerm):
    """MDC's adaptive subset loss as an add-on term of the matching loop (losses.py).

    Each class step measures the prefix distances d_1..d_m of the base loss's batch, adds the
    matching loss of the current MLS, and the loop leaves the frozen prefix untouched."""

    def __init__(self, instances: int, syn_batch: int, interval: int, shared: bool = False):
        # subset sizes eligible as MLS: 1..N-1, or the always-present prefix of a full batch
        self.features = instances - 1 if instances <= syn_batch else syn_batch // 2
        self.interval, self.shared = interval, shared
        self.mls = MLSState(candidates=self.features)

    def syn_indices(self, k: int, batch: int, gen: torch.Generator) -> torch.Tensor:
        head = batch // 2  # MLS candidates ride in every batch, in order (module docstring)
        rest = head + torch.randperm(k - head, generator=gen)[:batch - head]
        return torch.cat([torch.arange(head), rest])

    def after_class(self, step: ClassStep):
        self.mls.observe(prefix_distances(step.real_features, step.syn_features))
        subset = torch.arange(self.mls.mls, device=step.real.device)
        return class_step_loss(step.container, step.net, step.real, step.c, subset, step.aug, step.gen,
                               step.distance, own=not self.shared, compute_dtype=step.compute_dtype)

    def after_outer(self, outer: int, reduce=None) -> None:
        if (outer + 1) % self.interval == 0:
            self.mls.end_period(outer + 1, reduce=reduce)

    def frozen_prefix(self) -> int:
        return self.mls.frozen_now

    def trained_prefix(self) -> int:
        return trained_prefix(self.mls.frozen, self.mls.mls)

    def report(self) -> dict:
        return {"multisize": {"mls_history": self.mls.history, "frozen": self.mls.frozen, "final_mls": self.mls.mls}}

    def state_dict(self) -> dict:
        return {"mls": self.mls.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        self.mls = MLSState.from_state_dict(st["mls"])


def herding_prefix_order(container, data, protect: int = 0, feature_steps: int = 300, seed: int = 0,
                         device: str = "cpu", progress: bool = False) -> torch.Tensor:
    """(num_classes, N) per-class instance order: the first `protect` in place, the rest by herding.

    Herding runs in the L2-normalised features of a ConvNet trained `feature_steps` steps on
    the real train split (as coreset.herding_coreset) and approaches the real class mean.
    Apply with container.select_instances(order).
    """
    from .coreset import embed_normalised, feature_net, herding_order

    n = container.instances_per_class
    protect = min(max(protect, 0), n)
    net = feature_net(data, feature_steps, seed, device, progress, desc="prefix-order features")
    rows = []
    with torch.no_grad():
        for c in range(data.num_classes):
            target = embed_normalised(net, data.class_images(c), device).mean(0)
            syn = container.generate(torch.full((n,), c, dtype=torch.long, device=device),
                                     torch.arange(n, device=device))
            rows.append(herding_order(embed_normalised(net, syn, device), n, target=target, start=protect))
    return torch.stack(rows)
