"""The bad-input table: every row gives exit code != 0, one line on stderr, no traceback, and
leaves nothing behind (no new file, no folder, no temporary) -- through the real commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgecond.cli import main
from edgecond_device.cli import main as device_main


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run directory and its exported model."""
    root = tmp_path_factory.mktemp("finished")
    r = CliRunner()
    assert r.invoke(main, ["condense", "--ipc", "2", "--container", "random", "--out", str(root / "run")]).exit_code == 0
    assert r.invoke(main, ["export", str(root / "run"), "--onnx", str(root / "model.onnx")]).exit_code == 0
    return root / "run", root / "model.onnx"


def _npz(tmp: Path, **over) -> str:
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8), y_train=np.arange(20) % 2,
                  x_test=rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8), y_test=np.arange(6) % 2)
    arrays.update(over)
    np.savez(tmp / "data.npz", **{k: v for k, v in arrays.items() if v is not None})
    return f"npz:{tmp / 'data.npz'}"


def _condense(dataset: str, tmp: Path) -> list[str]:
    return ["condense", "--dataset", dataset, "--ipc", "1", "--container", "random", "--out", str(tmp / "out")]


def _container(tmp: Path, run: Path, damage: str) -> Path:
    src = (run / "container.safetensors").read_bytes()
    p = tmp / "bad.safetensors"
    if damage == "truncated":
        p.write_bytes(src[: len(src) // 2])
    elif damage == "garbage":
        p.write_bytes(b"\x00garbage" * 50)
    else:  # newer format version
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(run / "container.safetensors"), framework="pt") as f:
            meta, tensors = json.loads(f.metadata()["edgecond"]), {k: f.get_tensor(k) for k in f.keys()}
        save_file(tensors, str(p), metadata={"edgecond": json.dumps({**meta, "format_version": 99})})
    return p


def _model(tmp: Path, model: Path, edit) -> Path:
    m = onnx.load(str(model))
    edit(m)
    p = tmp / "bad.onnx"
    onnx.save(m, str(p))
    return p


def _edit_meta(**changes):
    def edit(m):
        meta = json.loads(m.metadata_props[0].value)
        meta.update(changes)
        onnx.helper.set_model_props(m, {"edgecond": json.dumps(meta)})
    return edit


def _checkpoint_run(tmp: Path, run: Path) -> list[str]:
    out = tmp / "resumed"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    return ["condense", "--ipc", "2", "--container", "pixel", "--set", "outer=1", "--out", str(out), "--resume"]


def _no_container(tmp: Path, run: Path) -> Path:
    d = tmp / "unfinished"
    shutil.copytree(run, d)
    (d / "container.safetensors").unlink()
    return d


REGENERATE = ["regenerate", "MODEL", "--out", "OUT"]
# id -> (which CLI, args builder(tmp, run, model), text the one line must hold)
TABLE = {
    "unknown dataset": ("edgecond", lambda t, r, m: _condense("bogus", t), "unknown dataset 'bogus'"),
    "npz missing key": ("edgecond", lambda t, r, m: _condense(_npz(t, y_test=None), t), "missing key"),
    "npz misshaped key": ("edgecond", lambda t, r, m: _condense(_npz(t, x_train=np.zeros((20, 8), np.uint8)), t),
                          "'x_train' has shape"),
    "labels out of range": ("edgecond", lambda t, r, m: _condense(_npz(
        t, y_train=np.arange(20) % 2 + 4, classes=np.array(["cat", "dog"])), t),
                            "outside"),
    "28px test images of another shape": ("edgecond", lambda t, r, m: _condense(_npz(
        t, x_train=np.zeros((20, 28, 28, 1), np.uint8), x_test=np.zeros((6, 28, 28, 3), np.uint8)), t),
                                          "differ in shape"),
    "non-square images for an HMN": ("edgecond", lambda t, r, m: [*_condense(_npz(
        t, x_train=np.zeros((20, 28, 20), np.uint8), x_test=np.zeros((6, 28, 20), np.uint8)), t)[:-4],
        "--ipc", "10", "--out", str(t / "out")], "HMN needs square images, got 28x20"),
    "float pixels": ("edgecond", lambda t, r, m: _condense(_npz(t, x_test=np.zeros((6, 8, 8, 3), np.float32)), t),
                     "expected uint8 pixels"),
    "unwritable condense output": ("edgecond", lambda t, r, m: [*_condense("digits", t)[:-1], "/proc/edgecond-x"],
                                   "cannot write to /proc"),
    "unwritable export output": ("edgecond", lambda t, r, m: ["export", str(r), "--onnx", "/proc/x.onnx"],
                                 "cannot write to /proc"),
    "unwritable continual output": ("edgecond", lambda t, r, m: ["continual", "--out", "/proc/edgecond-x"],
                                    "cannot write to /proc"),
    "truncated container": ("edgecond", lambda t, r, m: ["export", str(_container(t, r, "truncated")),
                                                         "--onnx", str(t / "m.onnx")], "not a safetensors file"),
    "garbage container": ("edgecond", lambda t, r, m: ["info", str(_container(t, r, "garbage"))],
                          "not a safetensors file"),
    "newer-version container": ("edgecond", lambda t, r, m: ["evaluate", str(_container(t, r, "newer"))],
                                "format version 99"),
    "run directory without its container": ("edgecond", lambda t, r, m: ["export", str(_no_container(t, r)),
                                                                         "--onnx", str(t / "m.onnx")],
                                            "no container at"),
    "corrupt checkpoint": ("edgecond", lambda t, r, m: _checkpoint_run(t, r), "without --resume"),
    "corrupt onnx": ("device", lambda t, r, m: ["info", str(_write(t / "bad.onnx", b"\x08\x07junk" * 9))],
                     "not a loadable ONNX model"),
    "foreign onnx": ("device", lambda t, r, m: ["info", str(_model(t, m, lambda x: x.metadata_props.pop()))],
                     "without edgecond metadata"),
    "onnx listing fewer classes": ("device", lambda t, r, m: [REGENERATE[0], str(_model(
        t, m, _edit_meta(classes=["0", "1", "2"]))), "--out", str(t / "ex")], "graph holds more"),
    "onnx listing more instances": ("device", lambda t, r, m: [REGENERATE[0], str(_model(
        t, m, _edit_meta(instances_per_class=7))), "--out", str(t / "ex")], "cannot generate class 9, instance 6"),
    "onnx with another image shape": ("device", lambda t, r, m: [REGENERATE[0], str(_model(
        t, m, _edit_meta(image_shape=[1, 16, 16]))), "--out", str(t / "ex")], "graph outputs"),
    "onnx claiming fp32 for fewer bytes": ("device", lambda t, r, m: ["info", str(_model(
        t, m, _edit_meta(stored_floats=10 ** 6)))], "the file has"),
    "onnx with unreadable metadata": ("device", lambda t, r, m: ["info", str(_model(
        t, m, lambda x: onnx.helper.set_model_props(x, {"edgecond": "{not json"})))], "not JSON"),
    "class out of range": ("device", lambda t, r, m: [REGENERATE[0], str(m), "--classes", "12", "--out",
                                                      str(t / "ex")], "class 12 is not in this model"),
    "count out of range": ("device", lambda t, r, m: [REGENERATE[0], str(m), "--per-class", "999", "--out",
                                                      str(t / "ex")], "asked for 999 images per class"),
    "count zero": ("device", lambda t, r, m: [REGENERATE[0], str(m), "--per-class", "0", "--out", str(t / "ex")],
                   "per_class must be >= 1"),
}


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("row", list(TABLE))
def test_bad_input_is_one_line_and_leaves_nothing(row, finished, tmp_path):
    cli, make, says = TABLE[row]
    run, model = finished
    args = make(tmp_path, run, model)
    before, run_before = _tree(tmp_path), _tree(run.parent)
    res = CliRunner().invoke(main if cli == "edgecond" else device_main, args)
    assert res.exit_code not in (0, None), res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # handled: no traceback
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert says in lines[0], lines[0]
    assert _tree(tmp_path) == before and _tree(run.parent) == run_before  # nothing partial left behind
    assert not Path("/proc/edgecond-x").exists()

