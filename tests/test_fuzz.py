"""Property-based fuzzing (Hypothesis) of what users and files bring: every `--set` leaf of the
config tree, generated npz datasets, and edited metadata of containers and ONNX models.

The property, for every example: the command exits 0 with a valid result, or exits != 0 with
one line on stderr that names the problem (no traceback, no "internal error"), and nothing
outside its output changed. The default run (derandomized) takes seconds; `HYPOTHESIS_PROFILE=slow`
runs ten times the examples (profiles in conftest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from edgecond.cli import main
from edgecond.config import LEAVES
from edgecond_device.cli import main as device_main

QUIET = ["--set", "match.outer=1", "--set", "match.inner=1", "--set", "match.net_steps=1", "--set",
         "match.warm_start=0", "--set", "match.multisize=false", "--set", "prefix_order=none",
         "--set", "match.net_width=8", "--set", "match.syn_batch=8", "--set", "match.real_batch=8"]
EDGES = ["-1", "0", "1", "2", "0.5", "nan", "inf", "-inf", "1e300", "1e-300", "9" * 30, "abc", "", "[]",
         "[1,2,3]", "[0.5,0.5]", "true", "null", "\x00", "{}", "none", "sgd", "double-end", "herding", "int8"]


def _snapshot(root: Path, skip: Path) -> set[tuple[str, int]]:
    return {(str(p), p.stat().st_size) for p in root.rglob("*") if p.is_file() and skip not in p.parents}


def check(result, root: Path, out: Path, before: set) -> None:
    """The property: exit 0, or exit != 0 with one named line; nothing outside `out` changed."""
    if result.exit_code != 0:
        assert isinstance(result.exception, SystemExit), f"traceback: {result.exception!r}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert "internal error" not in lines[0], lines[0]
    assert _snapshot(root, out) == before


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-data")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (24, 8, 8), dtype=np.uint8)
    np.savez(d / "tiny.npz", x_train=x, y_train=np.arange(24) % 2, x_test=x[:8], y_test=np.arange(8) % 2)
    return d / "tiny.npz"


def _fresh(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    return root, root / "out"


@given(key=st.sampled_from(sorted(LEAVES)), value=st.one_of(st.sampled_from(EDGES), st.text(max_size=8)),
       kind=st.sampled_from(["hmn", "pixel", "haba", "random"]))
def test_every_setting_with_any_value(tmp_path_factory, tiny_npz, key, value, kind):
    root, out = _fresh(tmp_path_factory)
    before = _snapshot(root, out)
    args = ["condense", "--dataset", f"npz:{tiny_npz}", "--ipc", "10", "--container", kind,
            *(QUIET if kind != "random" else []), "--set", f"{key}={value}", "--out", str(out)]
    res = CliRunner().invoke(main, args)
    check(res, root, out, before)
    if res.exit_code == 0:
        from edgecond.io import load_container

        container, meta = load_container(out)
        assert meta["stored_bytes"] <= meta["budget_bytes"]
    else:
        assert not (out / "container.safetensors").exists()


pixels = st.sampled_from([np.uint8, np.uint8, np.float32, np.int64, np.bool_])
sizes = st.tuples(st.integers(0, 6), st.integers(1, 9), st.integers(1, 9), st.sampled_from([None, 1, 2, 3]))
names = st.lists(st.text(max_size=12), min_size=0, max_size=4)


@given(dtype=pixels, size=sizes, labels=st.lists(st.sampled_from([-1, 0, 1, 2, 3, 10 ** 9]), min_size=0, max_size=8),
       classes=st.one_of(st.none(), names), nan=st.booleans())
def test_any_npz_dataset(tmp_path_factory, dtype, size, labels, classes, nan):
    root, out = _fresh(tmp_path_factory)
    n, h, w, c = size
    shape = (n, h, w) if c is None else (n, h, w, c)
    x = np.full(shape, 7).astype(dtype)
    if nan and dtype == np.float32 and x.size:
        x.flat[0] = np.nan
    y = np.resize(np.asarray(labels or [0], dtype=np.int64), n)
    arrays = dict(x_train=x, y_train=y, x_test=x, y_test=y)
    if classes is not None:
        arrays["classes"] = np.array(classes)
    np.savez(root / "data.npz", **arrays)
    before = _snapshot(root, out)
    res = CliRunner().invoke(main, ["condense", "--dataset", f"npz:{root / 'data.npz'}", "--ipc", "1",
                                    "--container", "random", "--out", str(out)])
    check(res, root, out, before)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() |
                           st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-finished")
    r = CliRunner()
    assert r.invoke(main, ["condense", "--ipc", "10", "--classes", "0,1", "--set", "match.outer=1", "--set",
                           "match.inner=1", "--set", "match.warm_start=0", "--out", str(root / "run")]).exit_code == 0
    assert r.invoke(main, ["export", str(root / "run"), "--onnx", str(root / "m.onnx")]).exit_code == 0
    return root / "run" / "container.safetensors", root / "m.onnx"


def _edited(meta: dict, field, value):
    if field is None:
        return value  # the whole record replaced
    return {**meta, field: value}


@given(field=st.one_of(st.none(), st.sampled_from(["kind", "config", "classes", "image_shape", "mean", "std",
                                                   "budget_floats", "budget_bytes", "precision",
                                                   "instances_per_class", "instance_order", "format_version"])),
       value=json_values)
def test_any_container_metadata(tmp_path_factory, finished, field, value):
    from safetensors import safe_open
    from safetensors.torch import save_file

    root, out = _fresh(tmp_path_factory)
    with safe_open(str(finished[0]), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["edgecond"]), {k: f.get_tensor(k) for k in f.keys()}
    path = root / "c.safetensors"
    save_file(tensors, str(path), metadata={"edgecond": json.dumps(_edited(meta, field, value))})
    before = _snapshot(root, out)
    for args in (["info", str(path)], ["export", str(path), "--onnx", str(out / "m.onnx")]):
        check(CliRunner().invoke(main, args), root, out, before)


@given(field=st.one_of(st.none(), st.sampled_from(["kind", "classes", "image_shape", "mean", "std", "precision",
                                                   "instances_per_class", "stored_floats", "stored_bytes",
                                                   "budget_bytes", "format_version"])),
       value=json_values)
def test_any_onnx_metadata(tmp_path_factory, finished, field, value):
    root, out = _fresh(tmp_path_factory)
    m = onnx.load(str(finished[1]))
    meta = json.loads(m.metadata_props[0].value)
    onnx.helper.set_model_props(m, {"edgecond": json.dumps(_edited(meta, field, value))})
    path = root / "m.onnx"
    onnx.save(m, str(path))
    before = _snapshot(root, out)
    for args in (["info", str(path)], ["regenerate", str(path), "--format", "png", "--out", str(out)]):
        check(CliRunner().invoke(device_main, args), root, out, before)
    shutil.rmtree(out, ignore_errors=True)
