"""Over-budget condensation, then pruning back by Area Under the Margin (HMN Algorithm 1).

AUM (Pleiss et al., HMN Eq. 3-4): train a ConvNet on the generated images and average each
image's margin z_y - max_{i != y} z_i over training. Low AUM = hard or mislabelled-looking
images, high AUM = easy, redundant ones. Double-end pruning removes, per class, the
floor(beta*k) lowest-AUM and the k - floor(beta*k) highest-AUM instances; beta is picked by
grid search on the **validation** split (the paper picks it on test accuracy; we never read
the test split here).

Pruning removes instance memories only and keeps the survivors' order, so the container's
prefix order -- and everything shared -- is intact. With `protect=n`, the first n instances
of every class are never pruned (so the small multisize subsets survive pruning unchanged).
"""

from __future__ import annotations

import torch

from .config import CHOICES, EvalConfig, PruneConfig
from .containers import Container
from .data import Dataset
from .evaluation import accuracy, train_classifier

METHODS = CHOICES["prune.method"]


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i for each row (HMN Eq. 3)."""
    assigned = logits.gather(1, labels[:, None])[:, 0]
    other = logits.clone()
    other.scatter_(1, labels[:, None], float("-inf"))
    return assigned - other.max(dim=1).values


def aum_scores(container: Container, data: Dataset, cfg: PruneConfig, seed: int = 0,
               device: str = "cpu") -> torch.Tensor:
    """AUM of every generated image, shape (classes, instances)."""
    x, y = container.images()
    total = torch.zeros(len(x))
    count = 0

    def record(step, model):
        nonlocal total, count
        if (step + 1) % cfg.aum_every:
            return
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(b.to(device)).cpu() for b in x.split(512)])
        total += margins(logits, y)
        count += 1

    train_classifier(x, y, data.image_shape, data.num_classes, EvalConfig(steps=cfg.aum_steps), seed=seed,
                     flip=data.flip, device=device, progress=False, on_step=record)
    return (total / max(1, count)).view(container.num_classes, container.instances_per_class)


def keep_indices(aum: torch.Tensor, remove: int, method: str, beta: float = 0.0, protect: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Per class, the instances that survive (ascending = original order), shape (classes, N - remove)."""
    k_classes, n = aum.shape
    if not 0 <= remove <= n - max(protect, 1):
        raise ValueError(f"cannot remove {remove} of {n} instances per class with {protect} protected")
    keep = []
    for c in range(k_classes):
        cand = torch.arange(protect, n)
        if method == "random":
            drop = cand[torch.randperm(len(cand), generator=generator)[:remove]]
        elif method in ("double-end", "easy"):
            hard = int(beta * remove) if method == "double-end" else 0
            by_aum = cand[torch.argsort(aum[c, protect:], stable=True)]  # hardest first
            drop = torch.cat([by_aum[:hard], by_aum[len(by_aum) - (remove - hard):]]) if remove else by_aum[:0]
        else:
            raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
        mask = torch.ones(n, dtype=torch.bool)
        mask[drop] = False
        keep.append(torch.nonzero(mask)[:, 0])
    return torch.stack(keep)


def val_accuracy(x: torch.Tensor, y: torch.Tensor, data: Dataset, steps: int, seed: int, device: str) -> float:
    """Accuracy on the validation split of a network trained on (x, y); never touches test."""
    model = train_classifier(x, y, data.image_shape, data.num_classes, EvalConfig(steps=steps), seed=seed,
                             flip=data.flip, device=device, progress=False)
    return accuracy(model, data.x_val.to(device), data.y_val.to(device))


def select_beta(container: Container, aum: torch.Tensor, remove: int, data: Dataset, cfg: PruneConfig,
                seed: int = 0, device: str = "cpu") -> tuple[float, dict[float, float]]:
    """Grid-search beta on validation accuracy; returns (best beta, {beta: val accuracy})."""
    scores = {}
    for beta in cfg.betas:
        keep = keep_indices(aum, remove, "double-end", beta, cfg.protect)
        c = keep.shape[0]
        cls = torch.arange(c).repeat_interleave(keep.shape[1])
        with torch.no_grad():
            x = container.generate(cls, keep.flatten())
        scores[float(beta)] = val_accuracy(x, cls, data, cfg.select_steps, seed, device)
    best = max(scores, key=lambda b: (scores[b], -abs(b - 0.5)))  # ties: the more balanced beta
    return best, scores


def prune_container(container: Container, target: int, data: Dataset, cfg: PruneConfig, seed: int = 0,
                    device: str = "cpu") -> dict:
    """Prune `container` in place to `target` instances per class; returns the report section."""
    n = container.instances_per_class
    remove = n - target
    report: dict = {"method": cfg.method, "instances_before": n, "instances_after": target,
                    "removed_per_class": remove, "protect": cfg.protect}
    if cfg.method == "none" or remove <= 0:
        return report
    if cfg.method == "random":  # needs no training dynamics
        keep = keep_indices(torch.zeros(container.num_classes, n), remove, "random", protect=cfg.protect,
                            generator=torch.Generator().manual_seed(seed))
        report["kept"] = keep.tolist()
        container.select_instances(keep)
        return report
    aum = aum_scores(container, data, cfg, seed=seed, device=device)
    report["aum"] = {"mean": float(aum.mean()), "std": float(aum.std()), "min": float(aum.min()),
                     "max": float(aum.max()), "per_instance": aum.tolist()}
    beta = 0.0
    if cfg.method == "double-end":
        beta, grid = select_beta(container, aum, remove, data, cfg, seed=seed, device=device)
        report["beta_grid_val_accuracy"] = grid
    report["beta"] = beta
    keep = keep_indices(aum, remove, cfg.method, beta, cfg.protect, torch.Generator().manual_seed(seed))
    report["kept"] = keep.tolist()
    report["figures"] = _extremes(container, aum)
    container.select_instances(keep)
    return report


def _extremes(container: Container, aum: torch.Tensor, per_class: int = 5) -> dict:
    """The lowest- and highest-AUM images of every class (the paper's Fig. 10), before pruning."""
    order = torch.argsort(aum, dim=1)
    out = {}
    with torch.no_grad():
        for name, idx in (("lowest", order[:, :per_class]), ("highest", order[:, -per_class:].flip(1))):
            cls = torch.arange(aum.shape[0]).repeat_interleave(idx.shape[1])
            out[name] = (container.generate(cls, idx.flatten()), cls)
    return out
