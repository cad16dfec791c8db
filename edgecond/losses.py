"""The gradient-matching loss, and the interface of the add-on loss terms.

The base loss (IDC's): a batch of real images of class c and a batch of the container's
images of c pass through ONE shared augmentation draw and the matching network; the loss is
the distance between the two batches' gradients of the network's conv weights (real
gradients detached, synthetic ones differentiated through).

Add-on terms (MDC's subset loss in multisize.py, HaBa's contrast in contrast.py) are small
objects the loop (matching.py) calls at named points, in the style of Avalanche's plugins:

  before_class(c, gen)                      -> extra loss of class c, computed before the base loss
  after_class(step: ClassStep)              -> extra loss of class c, given the base loss's step
  after_inner(gen)                          -> after each inner iteration's class steps
  after_outer(outer, reduce)                -> after each outer iteration (reduce: sum across ranks)

plus `syn_indices` (which container images a class step matches), `frozen_prefix` (instances
no optimiser step may move) and `state_dict`/`load_state_dict` (checkpointed with the run).
The order of the calls is part of the result: they draw from the step's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .augment import Augment
from .containers import Container
from .resources import compute_precision


def phase(name: str):
    """A named region of a class step, for torch.profiler (benchmarks/speed.py reads them);
    costs next to nothing when no profiler runs."""
    return torch.profiler.record_function(f"edgecond.{name}")


def gradient_distance(g_syn: list[torch.Tensor], g_real: list[torch.Tensor], kind: str) -> torch.Tensor:
    if kind == "mse":
        return sum(((a - b) ** 2).sum() for a, b in zip(g_syn, g_real))
    if kind == "l1":
        return sum((a - b).abs().sum() for a, b in zip(g_syn, g_real))
    raise ValueError(f"unknown distance {kind!r}; choose mse or l1")


def class_step_loss(container: Container, net, real: torch.Tensor, c: int, syn_idx: torch.Tensor,
                    aug: Augment, gen: torch.Generator, distance: str, features: int = 0, own: bool = False,
                    compute_dtype: str = "fp32"):
    """The gradient-matching loss of class c: one shared augmentation, conv-weight gradients.

    With features=m > 0 also returns the detached features of the real batch and of the first
    m synthetic images: (loss, real features, synthetic features).
    own=True: the loss trains only the images' own parameters (Container.generate_own).
    compute_dtype: the precision of the network's passes (resources.compute_precision).
    """
    cls = torch.full((len(syn_idx),), c, dtype=torch.long, device=syn_idx.device)
    with phase("generate"):
        syn = container.generate_own(cls, syn_idx) if own else container.generate(cls, syn_idx)
    with phase("augment"):
        both = aug(torch.cat([real, syn]), generator=gen, shared=True)
    xr, xs = both[:len(real)], both[len(real):]
    params = net.conv_weights()
    yr = torch.full((len(xr),), c, dtype=torch.long, device=xr.device)
    with phase("real gradients"), compute_precision(compute_dtype, xr.device):
        fr = net.embed(xr)
        g_real = torch.autograd.grad(F.cross_entropy(net.classifier(fr), yr), params, retain_graph=features > 0)
        g_real = [g.detach() for g in g_real]
    with phase("synthetic gradients"), compute_precision(compute_dtype, xs.device):
        fs = net.embed(xs)
        g_syn = torch.autograd.grad(F.cross_entropy(net.classifier(fs), cls), params, create_graph=True)
    loss = gradient_distance(g_syn, g_real, distance)
    if features:
        return loss, fr.detach(), fs[:features].detach()
    return loss


@dataclass
class ClassStep:
    """One class step of the loop, as the add-on terms see it."""

    container: Container
    net: torch.nn.Module
    real: torch.Tensor
    c: int
    gen: torch.Generator
    aug: Augment
    distance: str
    compute_dtype: str = "fp32"             # match.compute_dtype: add-on terms match in the same precision
    loss: torch.Tensor | None = None        # the base matching loss
    real_features: torch.Tensor | None = None
    syn_features: torch.Tensor | None = None  # of the first `features` synthetic images


class LossTerm:
    """An add-on to the matching loss; every hook is optional (see the module docstring)."""

    features: int = 0  # synthetic images whose features the base loss should return

    def syn_indices(self, k: int, batch: int, gen: torch.Generator) -> torch.Tensor | None:
        return None

    def before_class(self, c: int, gen: torch.Generator):
        return 0.0

    def after_class(self, step: ClassStep):
        return 0.0

    def after_inner(self, gen: torch.Generator) -> None:
        pass

    def after_outer(self, outer: int, reduce=None) -> None:
        pass

    def frozen_prefix(self) -> int:
        return 0

    def trained_prefix(self) -> int:
        """The prefix this term trained as a subset: pruning and prefix ordering keep it first."""
        return 0

    def report(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, st: dict) -> None:
        pass
