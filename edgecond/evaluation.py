"""The evaluation protocol: train a fresh ConvNet on a set of images, report test accuracy.

Every number edgecond quotes for a container comes from here, so every container -- real
coreset, pixels, HMN -- is judged by the same training recipe: DSA-style augmentation,
CutMix (p=0.5), SGD with momentum and a cosine schedule, a fresh network per seed.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import Augment, cutmix
from .config import EvalConfig
from .data import Dataset
from .models import build_convnet


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / max(1, len(x))


def train_classifier(x: torch.Tensor, y: torch.Tensor, image_shape, num_classes: int,
                     cfg: EvalConfig, seed: int, flip: bool, device: str = "cpu",
                     progress: bool = True, desc: str = "train", on_step=None) -> torch.nn.Module:
    """Train a fresh ConvNet on (x, y) with the protocol's recipe; returns it in eval mode.

    `on_step(step, model)`, if given, is called after every optimiser step (e.g. to record
    training dynamics such as AUM margins).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_convnet(image_shape, num_classes, width=cfg.width, depth=cfg.depth).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    steps = cfg.num_steps(len(x))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=cfg.min_lr)
    aug = Augment(flip=flip)
    x, y = x.to(device), y.to(device)
    order = torch.randperm(len(x), generator=gen)
    pos = 0
    model.train()
    for step in tqdm(range(steps), desc=desc, disable=None if progress else True, leave=False, file=sys.stderr):
        if pos + min(cfg.batch_size, len(x)) > len(order):  # next epoch
            order, pos = torch.randperm(len(x), generator=gen), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        xb, yb = x[idx], y[idx]
        if cfg.augment:
            xb = aug(xb, generator=gen)
        xb, ya, yb2, lam = cutmix(xb, yb, generator=gen, prob=cfg.cutmix_prob)
        out = model(xb)
        loss = lam * F.cross_entropy(out, ya) + (1 - lam) * F.cross_entropy(out, yb2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step, model)
            model.train()
    model.eval()
    return model


def sample_sd(values) -> float:
    """The sample standard deviation (n - 1) of per-seed values; 0 for one seed. Every spread the
    toolkit reports is this one (results before 2026-12-06 stored np.std's population value; the
    benchmarks' tables recompute from the per-seed values they kept)."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1, axis=0)) if len(values) > 1 else 0.0


def evaluate_images(x: torch.Tensor, y: torch.Tensor, data: Dataset, cfg: EvalConfig,
                    seeds: int | list[int] = 3, device: str = "cpu", progress: bool = True) -> dict:
    """Train one network per seed on (x, y); report test and val accuracy (docs/architecture.md, Evaluation)."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    tests, vals = [], []
    for s in seed_list:
        model = train_classifier(x, y, data.image_shape, data.num_classes, cfg, seed=s,
                                 flip=data.flip, device=device, progress=progress,
                                 desc=f"seed {s}")
        tests.append(accuracy(model, data.x_test.to(device), data.y_test.to(device)))
        vals.append(accuracy(model, data.x_val.to(device), data.y_val.to(device)))
    return {
        "accuracy_mean": float(np.mean(tests)),
        "accuracy_std": sample_sd(tests),
        "accuracies": tests,
        "val_accuracy_mean": float(np.mean(vals)),
        "val_accuracies": vals,
        "seeds": seed_list,
        "train_images": int(len(x)),
        "config": asdict(cfg),
    }


def subset_sizes(spec: str, n: int) -> list[int]:
    """'1,2,5' -> [1, 2, 5]; 'all' -> every size up to n, or ~12 log-spaced sizes when n > 16."""
    if spec == "all":
        if n <= 16:
            return list(range(1, n + 1))
        return sorted({int(round(v)) for v in np.geomspace(1, n, 12)})
    sizes = sorted({int(s) for s in spec.split(",") if s.strip()})
    bad = [k for k in sizes if not 1 <= k <= n]
    if bad:
        raise ValueError(f"subset size {bad[0]} outside 1..{n} (the container holds {n} per class)")
    return sizes


def evaluate_subsets(container, data: Dataset, cfg: EvalConfig, sizes: list[int], seeds: int | list[int] = 3,
                     device: str = "cpu", progress: bool = True) -> dict:
    """`subsets` -> {size: {mean, std, accuracies}}: each prefix S_[k] trained on alone."""
    out = {}
    for k in sizes:
        x, y = container.images(per_class=k)
        r = evaluate_images(x, y, data, cfg, seeds=seeds, device=device, progress=progress)
        out[str(k)] = {"mean": r["accuracy_mean"], "std": r["accuracy_std"], "accuracies": r["accuracies"]}
    return out
