"""The kind registry is the extension point: every kind, and a new one defined here, goes through
condense, save/load, evaluate and export; what a kind cannot do is refused before any work."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgecond.condense import condense
from edgecond.config import ConfigError, EvalConfig
from edgecond.containers import Container
from edgecond.evaluation import evaluate_images
from edgecond.export import export_container
from edgecond.io import load_container
from edgecond.kinds import KINDS, Kind, get, names, register, whole_ipc
from edgecond_device import Regenerator
from helpers import TINY

FAST = {**TINY, "match.warm_start": 5}


# --------------------------------------------------------------------------- a kind the library does not know

class BrightnessContainer(Container):
    """A toy kind: one image per class plus one brightness offset per instance."""

    kind = "toy-brightness"

    def __init__(self, num_classes: int, image_shape, instances: int):
        super().__init__(num_classes, image_shape)
        self.base = nn.Parameter(torch.zeros(num_classes, *self.image_shape))
        self.offset = nn.Parameter(torch.zeros(num_classes, instances))

    @property
    def instances_per_class(self) -> int:
        return self.offset.shape[1]

    def _generate(self, classes, instances):
        off = self.offset.flatten().index_select(0, classes * self.instances_per_class + instances)
        return self.base.index_select(0, classes) + off[:, None, None, None]

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "image_shape": list(self.image_shape),
                "instances": self.instances_per_class}

    def parts(self) -> dict[str, int]:
        return {"base": self.base.numel(), "offset": self.offset.numel()}

    def frozen_slices(self, n):
        return [(self.offset, slice(0, n))]


def build_brightness(data, cfg, gen, over_budget=0.0):
    """Within the budget: one base image per class, the rest of it in per-instance offsets (capped at 8)."""
    per_image = int(np.prod(data.image_shape))
    instances = min(8, (whole_ipc("toy-brightness", cfg.values_ipc) - 1) * per_image)
    cont = BrightnessContainer(data.num_classes, data.image_shape, instances)
    with torch.no_grad():
        cont.base.copy_(torch.stack([data.class_images(c).mean(0) for c in range(data.num_classes)]))
        cont.offset.copy_(torch.randn(cont.offset.shape, generator=gen) * 0.1)
    return cont


@pytest.fixture
def toy_kind(monkeypatch):
    kind = Kind(name="toy-brightness", cls=BrightnessContainer, build=build_brightness,
                description="a class mean plus a brightness offset per instance")
    monkeypatch.setitem(KINDS, kind.name, kind)  # removed again after the test
    return kind


def test_a_new_kind_runs_through_condense_load_evaluate_and_export(toy_kind, digits, tmp_path):
    res = condense(digits, "toy-brightness", 2, settings=FAST, out=tmp_path / "run", progress=False)
    assert res.report["stored_floats"] <= res.report["budget_floats"]
    assert len(res.report["loss_curve"]) == FAST["match.outer"]  # it was matched, not just built
    loaded, meta = load_container(tmp_path / "run")  # found through the registry by its name
    assert isinstance(loaded, BrightnessContainer) and meta["kind"] == "toy-brightness"
    assert torch.equal(loaded.images()[0], res.container.images()[0])
    x, y = loaded.images()
    ev = evaluate_images(x, y, digits, EvalConfig(steps=100), seeds=1, progress=False)
    assert ev["accuracy_mean"] > 0.5  # class means of digits are far above chance (0.1)
    summary = export_container(tmp_path / "run", tmp_path / "toy.onnx")
    assert summary["max_abs_error"] <= 1e-5
    images, labels = Regenerator(tmp_path / "toy.onnx").generate()
    np.testing.assert_allclose(images, x.numpy(), atol=1e-5)


def test_a_new_kind_is_refused_what_it_cannot_do_before_any_work(toy_kind, digits, tmp_path):
    for setting in ({"match.multisize": True}, {"prefix_order": "herding"}, {"prune.method": "random"},
                    {"match.haba_contrast": 0.1}):
        with pytest.raises(ConfigError, match="toy-brightness container cannot do"):
            condense(digits, "toy-brightness", 2, settings={**FAST, **setting}, out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="in_budget_instances"):
        register(Kind(name="toy-prunable", cls=BrightnessContainer, build=build_brightness, prunable=True))


def test_register_refuses_a_name_already_taken():
    with pytest.raises(ValueError, match="already registered"):
        register(Kind(name="hmn", cls=BrightnessContainer, build=build_brightness))
    assert get("hmn").cls is not BrightnessContainer


# --------------------------------------------------------------------------- every registered kind

def _ipc(kind: str) -> int:
    return 5 if kind == "hmn" else 2


@pytest.mark.parametrize("kind", names())
def test_every_kind_condenses_round_trips_and_exports(kind, digits, tmp_path):
    res = condense(digits, kind, _ipc(kind), settings=FAST if get(kind).matched else {}, out=tmp_path / kind,
                   progress=False)
    assert res.report["stored_floats"] <= res.report["budget_floats"]
    assert (tmp_path / kind / "config.json").is_file()
    loaded, meta = load_container(tmp_path / kind)
    assert type(loaded) is get(kind).cls and meta["instance_order"] == res.meta["instance_order"]
    xa, ya = res.container.images()
    xb, yb = loaded.images()
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    summary = export_container(tmp_path / kind, tmp_path / f"{kind}.onnx")
    assert summary["max_abs_error"] <= 1e-5


CAPABILITIES = {"multisize": {"match.multisize": True}, "reorderable": {"prefix_order": "herding"},
                "prunable": {"prune.method": "random"}, "contrast": {"match.haba_contrast": 0.1},
                "container_keys": {"container.max_instances": 20}, "param_groups": {"match.decoder_lr": 0.0}}


@pytest.mark.parametrize("kind,capability", [(k, c) for k in names() for c in CAPABILITIES
                                             if not getattr(get(k), c)])
def test_what_a_kind_cannot_do_is_refused_before_any_work(kind, capability, digits, tmp_path):
    with pytest.raises(ConfigError, match=f"{kind} container cannot do"):
        condense(digits, kind, _ipc(kind), settings=CAPABILITIES[capability], out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_what_a_kind_can_do_is_accepted(digits):
    from edgecond.condense import settings_for

    for kind in names(matched=True):
        k = get(kind)
        for capability, setting in CAPABILITIES.items():
            if getattr(k, capability):
                assert settings_for(digits, kind, _ipc(kind), settings=setting)  # no ConfigError


# --------------------------------------------------------------------------- module structure

def test_the_package_has_no_import_cycles():
    """Modules import each other in one direction only (module- and function-level imports both count)."""
    root = Path(__import__("edgecond").__file__).parent
    modules = {".".join(("edgecond", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}
    graph = {m: set() for m in modules}
    for m, path in modules.items():
        package = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {t for t in targets if t in modules and not m.startswith(t + ".")
                         and not t.startswith(m + ".") and t != m}
    state: dict[str, int] = {}

    def visit(m, trail):
        state[m] = 1
        for t in sorted(graph[m]):
            assert state.get(t) != 1, "import cycle: " + " -> ".join(trail[trail.index(t):] + [t])
            if t not in state:
                visit(t, trail + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
