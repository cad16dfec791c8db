"""The continual strategies `edgecond continual` compares, found by name -- a registry shaped like
`edgecond.kinds`: one `Strategy` per name says how it is built from Avalanche's strategies and
this package's plugins, what its buffer stores and how those bytes are counted, and what it
can do. The harness, the CLI (`edgecond strategies`, `--strategies`) and the benchmarks read
it; a new strategy is one `register(Strategy(...))`, and a name already taken is refused.

Every buffer is sized from one budget: `ContinualConfig.ipc`, the papers' float32 images per
class (`budget.ipc_bytes`), so strategies compare at equal bytes or, where said, equal floats.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..budget import ipc_bytes
from ..data import Dataset


@dataclass
class Setup:
    """What a strategy is built from, for one (strategy, seed) run."""

    model: Any
    optimizer: Any
    common: dict            # Avalanche's strategy arguments: criterion, batch sizes, epochs, device, evaluator
    cfg: Any                # harness.ContinualConfig
    data: Dataset
    workdir: Path
    seed: int
    device: str
    stats: tuple | None     # (mean, std) the stream was normalised with, if any
    groups: list = field(default_factory=list)  # the stream's classes, per experience

    def budget(self, precision: str = "fp32") -> int:
        """The buffer's bytes: cfg.ipc images per class at `precision` (fp32: the papers' unit)."""
        return ipc_bytes(self.cfg.ipc, self.data.image_shape, self.data.num_classes, precision)


def _naive(s: Setup, plugins: list):
    from avalanche.training import Naive

    return Naive(model=s.model, optimizer=s.optimizer, plugins=plugins, **s.common)


def _lwf(s: Setup, plugins: list):
    from avalanche.training import LwF

    return LwF(model=s.model, optimizer=s.optimizer, alpha=s.cfg.lwf_alpha, temperature=s.cfg.lwf_temperature,
               plugins=plugins, **s.common)


def _joint(s: Setup, plugins: list):
    from avalanche.training import JointTraining

    return JointTraining(model=s.model, optimizer=s.optimizer, plugins=plugins, **s.common)


@dataclass(frozen=True)
class Strategy:
    """One strategy: `make(setup, plugins)` builds the Avalanche strategy, `plugins(setup)` its
    replay plugins (the first one's storage policy is the buffer whose bytes are counted)."""

    name: str
    description: str
    stores: str                                      # what its buffer holds
    bytes_rule: str                                  # how the bytes it stores are counted
    make: Callable[[Setup, list], Any] = _naive
    plugins: Callable[[Setup], list] = lambda s: []
    condenses: str | None = None                     # CondensedReplay's precision; None: no condensation
    joint: bool = False                              # trained on the whole stream at once (upper bound)
    held_bytes: Callable[[Any, Setup], int] | None = None  # bytes of a buffer the Avalanche strategy keeps itself

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not callable(v)}


REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    if strategy.name in REGISTRY:
        raise ValueError(f"a continual strategy named {strategy.name!r} is already registered")
    REGISTRY[strategy.name] = strategy
    return strategy


def get(name: str) -> Strategy:
    if name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


# ---------------------------------------------------------------------------- built-in strategies

def _exemplars(precision: str, herding: bool = False):
    """uint8 real exemplars in `precision`'s bytes of ipc images per class (uint8: equal floats)."""
    def plugins(s: Setup) -> list:
        from .plugins import ExemplarReplay

        sel = None
        if herding:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                from avalanche.training.storage_policy import HerdingSelectionStrategy
            sel = HerdingSelectionStrategy(s.model, "flatten")
        return [ExemplarReplay(s.budget(precision), s.data.num_classes, selection_strategy=sel)]
    return plugins


def _buffer_kwargs(s: Setup, precision: str) -> dict:
    """A CondensedBuffer's arguments for this run: the fp32 bytes of ipc images per class,
    stored and condensed at `precision`, normalised as the stream was."""
    return dict(precision=precision, preset=s.cfg.preset, settings=s.cfg.condense_settings, seed=s.seed,
                flip=s.data.flip, workdir=s.workdir, device=s.device, mean=s.stats and s.stats[0],
                std=s.stats and s.stats[1])


def _er_ace_condensed(precision: str):
    """ER-ACE whose buffer is condensed: its own ClassBalancedBuffer replaced by a CondensedBuffer
    (ER-ACE updates its buffer with each experience before training on it, so the experience
    is condensed first; its replay batches are the containers' regenerated images)."""
    def make(s: Setup, plugins: list):
        strategy = _er_ace(s, plugins)
        from .storage import CondensedBuffer

        strategy.storage_policy = CondensedBuffer(s.budget(), s.data.num_classes, **_buffer_kwargs(s, precision))
        return strategy
    return make


def _condensed(precision: str):
    """CondensedReplay: one container per experience in the fp32 bytes of ipc images per class,
    stored and condensed at `precision`, regenerated by onnxruntime before each experience."""
    def plugins(s: Setup) -> list:
        from .plugins import BufferSchedule, CondensedReplay

        replay = CondensedReplay(s.budget(), s.data.num_classes, **_buffer_kwargs(s, precision))
        schedule = [BufferSchedule(replay.storage_policy, s.cfg.device_budget)] if s.cfg.device_budget else []
        return [replay, *schedule]
    return plugins


def _sample_bytes(s: Setup, logits: bool = False) -> int:
    """A kept sample's bytes as a device would store it: its uint8 pixels, plus (DER) one fp32 logit
    per class. Avalanche keeps them as float tensors in RAM; the budget counts what a device holds."""
    pixels = math.prod(s.data.image_shape)
    return pixels + (4 * s.data.num_classes if logits else 0)


def _mem_size(s: Setup, logits: bool = False) -> int:
    """How many samples the fp32 bytes of ipc images per class hold (at least one per class)."""
    return max(s.data.num_classes, s.budget() // _sample_bytes(s, logits))


def _kept(strategy) -> int:
    """Samples in the buffer an Avalanche strategy (or one of its plugins) keeps."""
    owners = [strategy, *getattr(strategy, "plugins", [])]
    policy = next(o.storage_policy for o in owners if getattr(o, "storage_policy", None) is not None)
    return len(policy.buffer)


def _der(s: Setup, plugins: list):
    from avalanche.training import DER

    return DER(model=s.model, optimizer=s.optimizer, mem_size=_mem_size(s, logits=True),
               batch_size_mem=s.cfg.batch_size, alpha=0.1, beta=0.5, plugins=plugins, **s.common)


def _er_ace(s: Setup, plugins: list):
    from avalanche.training import ER_ACE

    return ER_ACE(model=s.model, optimizer=s.optimizer, mem_size=_mem_size(s), batch_size_mem=s.cfg.batch_size,
                  plugins=plugins, **s.common)


def _gdumb(s: Setup, plugins: list):
    from avalanche.training import GDumb

    return GDumb(model=s.model, optimizer=s.optimizer, mem_size=_mem_size(s), plugins=plugins, **s.common)


def _stream_classes(s: Setup):
    """A plugin giving iCaRL what it reads from `experience.benchmark`: `n_classes_per_exp` and
    `classes_order`. Avalanche 0.6's iCaRL takes them from an `nc_benchmark` scenario's
    experiences; the harness's stream (`class_incremental_benchmark`, shared by every strategy)
    has no such link, and its class split is `Setup.groups`, which this hands to each experience
    before iCaRL's plugin reads it."""
    from types import SimpleNamespace

    from avalanche.core import SupervisedPlugin

    split = SimpleNamespace(n_classes_per_exp=[len(g) for g in s.groups],
                            classes_order=[c for g in s.groups for c in g])

    class StreamClasses(SupervisedPlugin):
        def before_training_exp(self, strategy, **kwargs):
            strategy.experience.benchmark = split

    return StreamClasses()


def icarl_memory(cap: int, groups: list[list[int]]) -> int:
    """iCaRL's memory size for `cap` samples over a stream of class `groups`: Avalanche rounds each
    seen class's quota up (ceil(memory / classes seen)), so `cap` itself would be exceeded
    mid-stream (400 over 6 classes keeps 402); the largest memory whose rounded quotas fit after
    every experience."""
    seen = [sum(len(g) for g in groups[:i + 1]) for i in range(len(groups))]
    memory = cap
    while memory > 1 and any(math.ceil(memory / k) * k > cap for k in seen):
        memory -= 1
    return memory


def _icarl(s: Setup, plugins: list):
    """Avalanche's iCaRL on the ConvNet split into its feature extractor and its linear head:
    herding exemplars (a fixed memory of as many uint8 samples as the bytes hold), iCaRL's
    distillation loss, nearest-mean-of-exemplars classification."""
    from avalanche.training import ICaRL
    from torch import nn

    common = {k: v for k, v in s.common.items() if k != "criterion"}  # iCaRL brings its own loss
    features = nn.Sequential(s.model.features, s.model.flatten)
    return ICaRL(feature_extractor=features, classifier=s.model.classifier, optimizer=s.optimizer,
                 memory_size=icarl_memory(_mem_size(s), s.groups), buffer_transform=None, fixed_memory=True,
                 plugins=[_stream_classes(s), *plugins], **common)


def _icarl_bytes(strategy, s: Setup) -> int:
    icarl = next(p for p in strategy.plugins if hasattr(p, "x_memory"))
    return sum(len(x) for x in icarl.x_memory) * _sample_bytes(s)


def _generative(s: Setup, plugins: list):
    """Avalanche's GenerativeReplay with a VAE (generative.SizedVAE) whose float32 values fill the
    budget's bytes, trained by Avalanche's VAETraining after each experience; replayed samples
    are labelled by the previous model, as Avalanche does."""
    import torch
    from avalanche.training import GenerativeReplay, VAETraining
    from avalanche.training.plugins import EvaluationPlugin, GenerativeReplayPlugin

    from .generative import SizedVAE, sized_hidden

    vae = SizedVAE(s.data.image_shape, sized_hidden(s.data.image_shape, s.budget()), stats=s.stats,
                   device=s.device).to(s.device)
    generator = VAETraining(model=vae, optimizer=torch.optim.Adam(vae.parameters(), lr=1e-3, weight_decay=1e-4),
                            train_mb_size=s.cfg.batch_size, train_epochs=s.cfg.epochs, eval_mb_size=512,
                            device=s.device, plugins=[GenerativeReplayPlugin()],
                            evaluator=EvaluationPlugin(loggers=[]))
    return GenerativeReplay(model=s.model, optimizer=s.optimizer, generator_strategy=generator, plugins=plugins,
                            **s.common)


def _generator_bytes(strategy, s: Setup) -> int:
    return 4 * sum(p.numel() for p in strategy.generator_strategy.model.parameters())


NOTHING = "nothing"
EXEMPLAR_BYTES = "1 byte per pixel of each kept image"
MODEL_BYTES = "the stored values of every kept model as stored (int8 scales included)"

register(Strategy("naive", "fine-tune on each experience (lower bound)", NOTHING, NOTHING))
register(Strategy("replay", "random real exemplars, equal floats: ipc images per class", "uint8 real images",
                  EXEMPLAR_BYTES, plugins=_exemplars("uint8")))
register(Strategy("replay-bytes", "random real exemplars, equal bytes: 4 x ipc uint8 images per class",
                  "uint8 real images", EXEMPLAR_BYTES, plugins=_exemplars("fp32")))
register(Strategy("herding", "herding exemplars (iCaRL's selection), ipc images per class", "uint8 real images",
                  EXEMPLAR_BYTES, plugins=_exemplars("uint8", herding=True)))
register(Strategy("herding-bytes", "herding exemplars, equal bytes: 4 x ipc uint8 images per class",
                  "uint8 real images", EXEMPLAR_BYTES, plugins=_exemplars("fp32", herding=True)))
register(Strategy("lwf", "Learning without Forgetting (Avalanche's LwF)", NOTHING, NOTHING, make=_lwf))
for _p, _what in (("fp32", ""), ("fp16", ", stored as fp16 (2x the values)"),
                  ("int8", ", stored as int8 (about 4x the values)")):
    register(Strategy("hmn" if _p == "fp32" else f"hmn-{_p}",
                      f"CondensedReplay: an HMN per experience in the fp32 bytes of ipc IPC{_what}, "
                      "condensed as stored, regenerated by onnxruntime", "ONNX models", MODEL_BYTES,
                      plugins=_condensed(_p), condenses=_p))
register(Strategy("hmn-lwf", "hmn + LwF distillation (the HMN paper's protocol)", "ONNX models", MODEL_BYTES,
                  make=_lwf, plugins=_condensed("fp32"), condenses="fp32"))
KEPT_SAMPLES = ("samples x (pixels as uint8): Avalanche keeps its buffer as floats in RAM, the budget counts "
                "what a device stores; as many samples as the fp32 bytes of ipc images per class hold")
register(Strategy("der++", "Avalanche's DER (alpha 0.1, beta 0.5: DER++): replay with logit distillation",
                  "real samples and their logits", "samples x (uint8 pixels + one fp32 logit per class)",
                  make=_der, held_bytes=lambda strategy, s: _kept(strategy) * _sample_bytes(s, logits=True)))
register(Strategy("er-ace", "Avalanche's ER-ACE: replay with asymmetric cross-entropy", "real samples",
                  KEPT_SAMPLES, make=_er_ace, held_bytes=lambda strategy, s: _kept(strategy) * _sample_bytes(s)))
register(Strategy("gdumb", "Avalanche's GDumb: a class-balanced buffer, the model retrained on it alone",
                  "real samples", KEPT_SAMPLES, make=_gdumb,
                  held_bytes=lambda strategy, s: _kept(strategy) * _sample_bytes(s)))
register(Strategy("hmn-int8+er-ace", "ER-ACE replaying int8 HMNs instead of real samples: condensed replay on a "
                  "strong learner", "ONNX models", MODEL_BYTES, make=_er_ace_condensed("int8"), condenses="int8",
                  held_bytes=lambda strategy, s: strategy.storage_policy.stored_bytes()))
register(Strategy("icarl", "Avalanche's iCaRL: herding exemplars, distillation, nearest-mean classification",
                  "real samples", KEPT_SAMPLES, make=_icarl, held_bytes=_icarl_bytes))
register(Strategy("generative", "Avalanche's GenerativeReplay: a VAE (MLP, float32) sized to the bytes replays "
                  "samples the previous model labels", "a VAE generator",
                  "4 bytes x every value of the VAE (encoder too: it goes on training)", make=_generative,
                  held_bytes=_generator_bytes))
register(Strategy("joint", "Avalanche's JointTraining on all experiences at once (upper bound)", NOTHING, NOTHING,
                  make=_joint, joint=True))
