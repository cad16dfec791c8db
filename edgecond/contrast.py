"""HaBa's adversarial contrastive constraint (HaBa Sec. 3.2), as an add-on to the matching loop.

An adversary F (a ConvNet like the matching network, kept across outer iterations, Adam at
the paper's eta_F = 1e-3) learns features in which two hallucinations of one basis look alike
(InfoNCE over bases, Eq. 3, features L2-normalised; plus cross-entropy, Eq. 4). The container
adds lambda_cos * their cosine similarity (Eq. 5-6) to its matching loss, which pushes its
hallucinators apart. Off by default (benchmarks/condense.py measures it); sequential updates only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .containers import Container
from .containers.haba import HaBa
from .losses import LossTerm
from .models import build_convnet

LR, TEMPERATURE, CON_WEIGHT = 1e-3, 0.1, 0.1


class HabaContrast(LossTerm):
    """The adversary and its optimiser; `term` is the container's extra loss, `step` trains F.

    As an add-on term of the matching loop (losses.py): `weight` x `term` joins each class's
    loss (before_class), and F trains after each inner iteration (after_inner)."""

    def __init__(self, container: Container, image_shape, num_classes: int, width: int, *, seed: int,
                 weight: float = CON_WEIGHT, update_mode: str = "sequential", device: str = "cpu"):
        if not isinstance(container, HaBa):
            raise ValueError(f"match.haba_contrast needs --container haba, not {container.kind}")
        if update_mode != "sequential":
            raise ValueError("match.haba_contrast runs with match.update_mode=sequential only")
        if container.n_hall < 2:
            raise ValueError("match.haba_contrast needs at least 2 hallucinators; this budget fits 1")
        self.haba, self.num_classes, self.device, self.weight = container, num_classes, device, weight
        with torch.random.fork_rng():  # the adversary's init must not shift the matching RNG stream
            torch.manual_seed(seed + 1)
            self.net = build_convnet(image_shape, num_classes, width=width).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR)

    def _pairs(self, classes: torch.Tensor, gen: torch.Generator):
        """Every basis of `classes` through two random distinct hallucinators j != k."""
        h = self.haba
        j, k = torch.randperm(h.n_hall, generator=gen)[:2].tolist()
        cls = classes.to(self.device).repeat_interleave(h.n_bases)
        base = torch.arange(h.n_bases, device=self.device).repeat(len(classes))
        return h.generate(cls, j * h.n_bases + base), h.generate(cls, k * h.n_bases + base), cls

    def term(self, c: int, gen: torch.Generator) -> torch.Tensor:
        """Mean cosine similarity of class c's paired hallucinations in F's feature space (to minimise)."""
        xa, xb, _ = self._pairs(torch.tensor([c]), gen)
        return F.cosine_similarity(self.net.embed(xa), self.net.embed(xb), dim=1).mean()

    def step(self, gen: torch.Generator) -> None:
        """One adversary update on every class's pairs (the container is not trained here)."""
        with torch.no_grad():
            xa, xb, cls = self._pairs(torch.arange(self.num_classes), gen)
        fa, fb = self.net.embed(xa), self.net.embed(xb)
        sim = F.normalize(fa, dim=1) @ F.normalize(fb, dim=1).T / TEMPERATURE
        con = F.cross_entropy(sim, torch.arange(len(sim), device=self.device))
        task = F.cross_entropy(self.net.classifier(torch.cat([fa, fb])), torch.cat([cls, cls]))
        self.opt.zero_grad(set_to_none=True)
        (CON_WEIGHT * con + task).backward()
        self.opt.step()

    def before_class(self, c: int, gen: torch.Generator):
        return self.weight * self.term(c, gen)

    def after_inner(self, gen: torch.Generator) -> None:
        self.step(gen)

    def state_dict(self) -> dict:
        return {"adversary": self.net.state_dict(), "adversary_opt": self.opt.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        self.net.load_state_dict(st["adversary"])
        self.opt.load_state_dict(st["adversary_opt"])
