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


def _imagefolder(tmp: Path, damage: str) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp / "if" / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp / "if" / split / c / f"{i}.png")
    bad = tmp / "if" / "train" / "a" / "0.png"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:40])
    else:
        bad.write_text("this is text, not a picture")
    return f"imagefolder:{tmp / 'if'}"


def _edited_container(tmp: Path, run: Path, edit) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(run / "container.safetensors"), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["edgecond"]), {k: f.get_tensor(k) for k in f.keys()}
    p = tmp / "edited.safetensors"
    save_file(tensors, str(p), metadata={"edgecond": json.dumps(edit(meta))})
    return p


def _misshapen_checkpoint(tmp: Path) -> list[str]:
    import torch

    out = tmp / "resumed"
    args = ["condense", "--ipc", "2", "--container", "pixel", "--set", "outer=2", "--set", "inner=1",
            "--set", "checkpoint_every=1", "--set", "warm_start=0", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    (out / "container.safetensors").unlink()
    st = torch.load(out / "checkpoint.pt", weights_only=True)
    st["container"] = {k: torch.zeros(3, 3) for k in st["container"]}
    torch.save(st, out / "checkpoint.pt")
    return [*args, "--resume"]


def _no_test_images(tmp: Path) -> str:
    x = np.random.default_rng(0).integers(0, 255, (20, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp / "notest.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:0], y_test=np.arange(0))
    return f"npz:{tmp / 'notest.npz'}"


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
    "truncated png in an image folder": ("edgecond", lambda t, r, m: _condense(_imagefolder(t, "truncated"), t),
                                         "is not a readable image"),
    "text file named .png": ("edgecond", lambda t, r, m: _condense(_imagefolder(t, "text"), t),
                             "is not a readable image"),
    "npz object arrays": ("edgecond", lambda t, r, m: _condense(_npz(t, y_train=np.array([0, "a"] * 10, object)), t),
                          "cannot be read without running code"),
    "binary config file": ("edgecond", lambda t, r, m: [*_condense("digits", t), "--config",
                                                        str(_write(t / "bin.json", bytes(range(256))))], "as JSON"),
    "negative seed": ("edgecond", lambda t, r, m: [*_condense("digits", t), "--seed", "-1"], "seed=-1 is out of range"),
    "negative threads": ("edgecond", lambda t, r, m: [*_condense("digits", t), "--threads", "-1"],
                         "'--threads': -1 is not in the range"),
    "infinite budget": ("edgecond", lambda t, r, m: ["config", "--ipc", "inf"], "ipc=inf is out of range"),
    "nan budget": ("edgecond", lambda t, r, m: ["config", "--ipc", "nan"], "ipc=nan is out of range"),
    "zero-width matching network": ("edgecond", lambda t, r, m: ["config", "--ipc", "1", "--set", "match.net_width=0"],
                                    "match.net_width=0 is out of range"),
    "overflowing learning rate": ("edgecond", lambda t, r, m: ["config", "--ipc", "1", "--set", "match.lr=1e300"],
                                  "match.lr=1e+300 is out of range"),
    "three adam betas": ("edgecond", lambda t, r, m: ["config", "--ipc", "1", "--set", "match.betas=[0.9,0.9,0.9]"],
                         "match.betas takes 2 values, got 3"),
    "zero eval batch in a config file": ("edgecond", lambda t, r, m: ["config", "--ipc", "1", "--config", str(_write(
        t / "c.json", json.dumps({"eval": {"batch_size": 0}}).encode()))], "eval.batch_size=0 is out of range"),
    "opset the exporter cannot write": ("edgecond", lambda t, r, m: ["export", str(r), "--opset", "999", "--onnx",
                                                                     str(t / "m.onnx")], "opset 999 is outside"),
    "zero evaluation seeds": ("edgecond", lambda t, r, m: ["evaluate", str(r), "--seeds", "0"],
                              "'--seeds': 0 is not in the range"),
    "negative training steps": ("edgecond", lambda t, r, m: ["evaluate", str(r), "--steps", "-5"],
                                "'--steps': -5 is not in the range"),
    "dataset without test images": ("edgecond", lambda t, r, m: ["evaluate", "--full", "--dataset",
                                                                 _no_test_images(t)], "has no test images"),
    "more experiences than classes": ("edgecond", lambda t, r, m: ["continual", "--experiences", "11", "--out",
                                                                   str(t / "cl")], "--experiences must be in 1..10"),
    "container metadata that is a list": ("edgecond", lambda t, r, m: ["info", str(_edited_container(
        t, r, lambda meta: [1, 2]))], "not a JSON object"),
    "container metadata without a kind": ("edgecond", lambda t, r, m: ["info", str(_edited_container(
        t, r, lambda meta: {k: v for k, v in meta.items() if k != "kind"}))], "'kind'"),
    "container config with an unknown key": ("edgecond", lambda t, r, m: ["export", str(_edited_container(
        t, r, lambda meta: {**meta, "config": {**meta["config"], "bogus": 1}})), "--onnx", str(t / "m.onnx")],
        "describes no container"),
    "container asking for a huge allocation": ("edgecond", lambda t, r, m: ["export", str(_edited_container(
        t, r, lambda meta: {**meta, "config": {**meta["config"], "instances": 10 ** 12}})), "--onnx",
        str(t / "m.onnx")], "describes other tensors than it holds"),
    "checkpoint holding misshapen tensors": ("edgecond", lambda t, r, m: _misshapen_checkpoint(t),
                                             "do not fit this run's container"),
    "unknown execution provider": ("device", lambda t, r, m: [REGENERATE[0], str(m), "--provider", "FooProvider",
                                                              "--out", str(t / "ex")], "'FooProvider' is not in"),
    "a class asked for twice": ("device", lambda t, r, m: [REGENERATE[0], str(m), "--classes", "0,0", "--out",
                                                           str(t / "ex")], "more than once"),
    "a class list without classes": ("device", lambda t, r, m: [REGENERATE[0], str(m), "--classes", " , ", "--out",
                                                                str(t / "ex")], "lists no class"),
    "unwritable regenerate output": ("device", lambda t, r, m: [REGENERATE[0], str(m), "--out", "/proc/edgecond-x"],
                                     "cannot write to /proc"),
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
    assert "internal error" not in lines[0], lines[0]  # handled where it happens, not by the safety net
    assert _tree(tmp_path) == before and _tree(run.parent) == run_before  # nothing partial left behind

