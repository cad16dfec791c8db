"""Storage policies for replay, all counting what a device stores.

* `PerClassBuffer`: real exemplars, a fixed number per class (random or herding selection,
  Avalanche's ParametricBuffer), stored on the device as uint8 pixels: C*H*W bytes each.
* `HMNBuffer`: after each experience, condenses its classes into an HMN within the per-class
  budget, exports it to ONNX and keeps only the ONNX file; whenever replay data is needed it
  regenerates exemplars with the torch-free device runtime (onnxruntime), never from the
  torch container. A device budget schedule (images per class per experience) takes
  multisize prefixes, so a shrinking device replays fewer images without condensing again.
  With `shared=True` it grows one HMN over the stream instead of one per experience (see
  `HMNBuffer.condense_shared`): the device keeps a single ONNX model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..data import Dataset
from .scenario import avalanche_dataset

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from avalanche.training.storage_policy import ExemplarsBuffer, ParametricBuffer


@contextlib.contextmanager
def own_random_streams():
    """Run the buffer's work on the side of the learner's random streams (torch's, NumPy's and
    Python's global generators are restored afterwards). Condensation reseeds torch's global
    generator; without this, a strategy's training would depend on whether its containers were
    condensed in this process or found on disk (a resumed run, a strategy reusing another's)."""
    py, np_state = random.getstate(), np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        yield
    random.setstate(py)
    np.random.set_state(np_state)


class _NoDeprecatedUpdate:
    """Avalanche 0.6's ReplayPlugin still calls the deprecated `update`; route it to post_adapt
    without the warning it prints on every experience."""

    def update(self, strategy, **kwargs):
        self.post_adapt(strategy, strategy.experience)


class PerClassBuffer(_NoDeprecatedUpdate, ParametricBuffer):
    """Exactly `per_class` exemplars of every class seen so far (Avalanche's ParametricBuffer
    splits a fixed total among the classes seen, which would give early classes more)."""

    def __init__(self, per_class: int, total_classes: int, selection_strategy=None):
        super().__init__(max_size=per_class * total_classes, groupby="class", selection_strategy=selection_strategy)
        self.per_class = per_class
        self.total_classes = total_classes
        self.seen: set[int] = set()

    def post_adapt(self, agent, exp):
        self.seen |= set(int(c) for c in exp.classes_in_this_experience)
        self.max_size = self.per_class * len(self.seen)
        super().post_adapt(agent, exp)
        self.max_size = self.per_class * self.total_classes  # what ReplayPlugin was built with

    def stored_bytes(self, image_bytes: int) -> int:
        return len(self.buffer) * image_bytes


class HMNBuffer(_NoDeprecatedUpdate, ExemplarsBuffer):
    """HMN replay. Per experience (default): one HMN of `ipc` IPC for that experience's classes,
    each with its own decoder and dataset memory. `shared=True`: one HMN for the whole stream,
    shaped by the budget solver for all `total_classes` at `ipc` IPC; the first experience
    learns its shared tiers (dataset memory, decoder), later experiences freeze them and
    condense only their classes' memories. The device stores the shared floats once, so each
    class gets the memory a whole-dataset HMN gives it (at 8x8 digits, 10 IPC: 67 instances of
    2 channels instead of 58 of 1). The device reserves the final budget from the start: after
    experience t it holds the shared tiers plus the seen classes' memories (less than the
    reserve until the last experience, when it is the solver's HMN for every class). On digits
    it does not beat per-experience HMNs (docs/results.md, continual table): a decoder fitted to the
    first experience's classes serves the later ones worse.
    """

    def __init__(self, data: Dataset, ipc: float, workdir: str | Path, total_classes: int, *,
                 precision: str = "fp32", schedule: list[int] | None = None, seed: int = 0,
                 preset: str = "quick", settings: dict | None = None, shared: bool = False, device: str = "cpu"):
        super().__init__(max_size=1)  # samples are not what a container's budget counts
        self.data, self.ipc, self.workdir = data, ipc, Path(workdir)
        self.precision, self.schedule, self.seed = precision, schedule, seed
        self.preset, self.settings, self.device = preset, {**(settings or {}), "seed": seed}, device
        self.total_classes, self.shared = total_classes, shared
        self.models: list[tuple[Path, list[int]]] = []  # (onnx file, global class ids)
        self.parts: list = []  # shared=True: the torch HMN of each experience (workstation side)
        self.timings: list[dict] = []
        self.experience = 0

    def condense_experience(self, classes: list[int]) -> tuple[Path, dict]:
        """Condense + export one experience's classes (cached on disk: reused across strategies)."""
        from ..condense import condense
        from ..export import export_onnx
        from ..io import load_container

        tag = (f"hmn-ipc{self.ipc:g}-{self.precision}-s{self.seed}-classes{'_'.join(map(str, classes))}"
               f"-{self.settings_digest()}")
        run, onnx_path = self.workdir / tag, self.workdir / f"{tag}.onnx"
        if not (run / "container.safetensors").is_file():  # resumes an interrupted run's checkpoint
            condense(self.data.subset(classes), "hmn", self.ipc, preset=self.preset, settings=self.settings,
                     out=run, progress=False, resume=True, device=self.device)
        t1 = time.time()
        if not onnx_path.is_file():
            cont, meta = load_container(run)
            export_onnx(cont, meta, onnx_path, precision=self.precision, source=run / "container.safetensors")
        # condensation is cached across strategies: report what it cost when it ran
        condense_s = json.loads((run / "report.json").read_text())["condense_seconds"]
        return onnx_path, {"condense_s": condense_s, "export_s": time.time() - t1}

    def config(self):
        """The settings these HMNs are condensed with (preset + settings), shaped for the whole stream."""
        from ..condense import settings_for

        return settings_for(self.data, "hmn", self.ipc, preset=self.preset, settings=self.settings)

    def condense_shared(self, classes: list[int]) -> tuple[Path, dict]:
        """Grow the stream's HMN by `classes` and export all seen classes as one ONNX model.

        The new classes' part is an HMN of the stream's shape over these classes alone; after the
        first experience it adopts (and freezes) the first part's dataset memory and decoder, so
        only its class and instance memories are warm-started and matched. Parts are cached on disk.
        """
        from ..config import Shape
        from ..containers.hmn import HMN
        from ..export import export_onnx
        from ..io import container_meta, load_container, save_container
        from ..kinds import hmn_shape
        from ..matching import Matcher
        from ..warmstart import warm_start

        cfg = self.config()
        shape = hmn_shape(Shape(self.data.image_shape, self.total_classes), cfg)
        # keyed by every class seen before (the shared tiers come from the first of them)
        before = self._seen() or classes
        tag = (f"hmn-shared{self.total_classes}-ipc{self.ipc:g}-s{self.seed}-after{'_'.join(map(str, before))}"
               f"-classes{'_'.join(map(str, classes))}-{self.settings_digest()}")
        run = self.workdir / tag
        subset = self.data.subset(classes)
        t0 = time.time()
        if (run / "container.safetensors").is_file():
            part, meta = load_container(run)
            condense_s = meta["condense_seconds"]
        else:
            part = HMN(**{**shape.hmn_kwargs(), "num_classes": len(classes)})
            part.init_memories(torch.Generator().manual_seed(self.seed))
            if self.parts:
                part.adopt_shared(self.parts[0])
            m = Matcher(part, subset, cfg, out=run, device=self.device)
            if not m.load_checkpoint():
                warm_start(part, subset, cfg.match.warm_start, seed=self.seed, device=self.device)
            m.run(progress=False)
            condense_s = round(time.time() - t0, 2)
            meta = container_meta(part, classes=subset.classes, mean=subset.mean, std=subset.std,
                                  budget_ipc=self.ipc, condense_seconds=condense_s)
            save_container(run, part.cpu().eval(), meta)
        if self.parts:  # a part loaded from disk must still match the stream's shared tiers
            part.adopt_shared(self.parts[0])
        self.parts.append(part.cpu().eval())
        seen = self._seen() + classes
        t1 = time.time()
        grown = HMN.concat_classes(self.parts)
        # the device reserves the whole stream's budget; budget_ipc expresses it over the seen classes
        reserve = self.ipc * self.total_classes / len(seen)
        meta = container_meta(grown, classes=[self.data.classes[c] for c in seen], mean=self.data.mean,
                              std=self.data.std, budget_ipc=reserve, stream_classes=self.total_classes)
        onnx_path = self.workdir / f"{tag}-grown.onnx"
        export_onnx(grown, meta, onnx_path, precision=self.precision)
        return onnx_path, {"condense_s": condense_s, "export_s": time.time() - t1}

    def _seen(self) -> list[int]:
        return [c for _, cls in self.models for c in cls]

    def settings_digest(self) -> str:
        """8 hex digits of the condensation settings in force (preset defaults included), so a cached
        container made under other settings -- or an older default -- is never reused."""
        blob = json.dumps(self.config().to_dict(), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:8]

    def post_adapt(self, agent, exp):
        classes = [int(c) for c in exp.classes_in_this_experience]
        with own_random_streams():
            self._store(classes)
        self.experience += 1

    def _store(self, classes: list[int]) -> None:
        if self.shared:  # one model for every class seen: it replaces the previous one on the device
            path, timing = self.condense_shared(classes)
            self.models = [(path, self._seen() + classes)]
        else:
            path, timing = self.condense_experience(classes)
            self.models.append((path, classes))
        self._timing(self.experience).update(timing)

    def _timing(self, experience: int) -> dict:
        while len(self.timings) <= experience:
            self.timings.append({"experience": len(self.timings)})
        return self.timings[experience]

    def per_class_now(self, instances: int) -> int:
        if not self.schedule:
            return instances
        # while training experience t (t containers stored) the device replays schedule[t] per class
        k = self.schedule[min(self.experience, len(self.schedule) - 1)]
        return max(1, min(int(k), instances))

    @property
    def buffer(self):
        """Regenerate every stored model's exemplars with onnxruntime (the device runtime)."""
        from edgecond_device import Regenerator

        if not self.models:
            return avalanche_dataset(torch.zeros(0, *self.data.image_shape), torch.zeros(0, dtype=torch.long))
        key = (tuple(str(p) for p, _ in self.models), self.per_class_now(10 ** 9))
        if getattr(self, "_cache", (None,))[0] == key:  # ReplayPlugin reads .buffer twice per experience
            return self._cache[1]
        t0 = time.time()
        xs, ys = [], []
        for path, classes in self.models:
            r = Regenerator(path, threads=1)
            images, labels = r.generate(per_class=self.per_class_now(r.instances_per_class))
            xs.append(torch.from_numpy(images))
            ys.append(torch.as_tensor(np.asarray(classes))[torch.from_numpy(labels)])
        t = self._timing(self.experience)  # regenerated for the experience about to be trained
        t["regenerate_s"] = t.get("regenerate_s", 0.0) + time.time() - t0
        self._cache = (key, avalanche_dataset(torch.cat(xs), torch.cat(ys)))
        return self._cache[1]

    @buffer.setter
    def buffer(self, value):  # ExemplarsBuffer.__init__ assigns an empty one
        pass

    def resize(self, strategy, new_size):
        self.max_size = new_size

    def stored_bytes(self) -> int:
        """Bytes of all stored containers' tensors at the exported precision."""
        from edgecond_device import read_metadata
        from edgecond_device.runtime import PRECISIONS

        per = PRECISIONS[self.precision]  # bytes per stored value
        return sum(int(read_metadata(p)["stored_floats"]) * per for p, _ in self.models)
