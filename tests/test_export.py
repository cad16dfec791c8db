"""ONNX export and the device runtime, for every container kind (registry-driven)."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from edgecond.condense import condense
from edgecond.export import export_onnx
from edgecond.io import save_container
from edgecond.kinds import names
from helpers import build
from edgecond_device import ModelError, Regenerator, to_uint8
from edgecond_device.cli import main as device_main

MATCHED = ["hmn", "pixel", "idc"]


def _container(kind, digits):
    if kind in ("random", "herding"):
        return condense(digits, kind, 2, progress=False)
    res = condense(digits, "random", 2, progress=False)  # borrow its meta
    ipc = 5 if kind == "hmn" else 2
    cont = build(kind, digits, ipc)
    return type(res)(cont.eval(), {**res.meta, "kind": kind, "budget_ipc": ipc, "budget_floats": ipc * 640,
                                   "budget_bytes": 4 * ipc * 640, "instance_order": None})


@pytest.fixture(scope="module")
def exported(digits, tmp_path_factory):
    out = {}
    for kind in names():
        d = tmp_path_factory.mktemp(f"onnx-{kind}")
        res = _container(kind, digits)
        src = save_container(d, res.container, res.meta)
        summary = export_onnx(res.container, res.meta, d / "model.onnx", source=src)
        out[kind] = (res, d / "model.onnx", summary)
    return out


@pytest.mark.parametrize("kind", names())
def test_device_images_equal_evaluation_images(exported, kind):
    res, path, summary = exported[kind]
    assert summary["max_abs_error"] <= 1e-5
    x_eval, y_eval = res.container.images()  # exactly what `evaluate` trains on
    images, labels = Regenerator(path).generate(batch_size=7)  # streamed in odd batches
    np.testing.assert_allclose(images, x_eval.numpy(), atol=1e-5, rtol=0)
    assert np.array_equal(labels, y_eval.numpy())
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


@pytest.mark.parametrize("kind", names())
def test_prefix_and_metadata_survive_export(exported, kind):
    res, path, _ = exported[kind]
    r = Regenerator(path)
    k = res.container.instances_per_class
    assert r.instances_per_class == k and r.classes == res.meta["classes"]
    sub, lab = r.generate(classes=[2, "7"], per_class=1)
    ref = res.container.generate(torch.tensor([2, 7]), torch.tensor([0, 0])).detach().numpy()
    np.testing.assert_allclose(sub, ref, atol=1e-5)
    assert lab.tolist() == [2, 7]
    # provenance (instance order, pruning) stays in the container file the model names by hash
    from edgecond.export import file_sha256

    assert r.meta["source_sha256"] == file_sha256(path.parent / "container.safetensors")
    assert "instance_order" not in r.meta and r.model_version == 2


def test_model_size_tracks_budget(digits, tmp_path):
    """fp32 model bytes = stored floats x 4 + a fixed overhead; fp16 about half the tensor bytes."""
    cont = build("hmn", digits, 10)
    meta = {"classes": digits.classes, "image_shape": [1, 8, 8], "mean": digits.mean, "std": digits.std,
            "budget_ipc": 10, "budget_floats": 6400, "budget_bytes": 4 * 6400, "kind": "hmn"}
    s32, s16, s8 = (export_onnx(cont, meta, tmp_path / f"{p}.onnx", precision=p, ort_format=True)
                    for p in ("fp32", "fp16", "int8"))
    tensor_bytes = 4 * cont.stored_floats()
    assert tensor_bytes <= s32["bytes"] <= tensor_bytes * 1.05 + 4096
    assert s16["max_abs_error"] < 1e-2 and s8["max_abs_error"] < 0.2
    # each precision keeps its size, in onnxruntime's own format too (constant folding would turn
    # fp16/int8 back into fp32: > b32); .ort pays a few KB per model and per Cast/DequantizeLinear node
    for ext, saved in ((".onnx", 0.4), (".ort", 0.25)):
        b32, b16, b8 = (s["files"][str(tmp_path / f"{p}{ext}")]["bytes"] for s, p in ((s32, "fp32"), (s16, "fp16"),
                                                                                   (s8, "int8")))
        assert b16 < b32 - saved * tensor_bytes and b8 < b16 - saved / 2 * tensor_bytes, (ext, b32, b16, b8)
    ops = (tmp_path / "fp16.required_operators.config").read_text()
    assert "ConvTranspose" in ops and "Cast" in ops and str(tmp_path) not in ops
    for p in ("fp32", "fp16", "int8"):  # the .ort regenerates what the .onnx does
        a, b = Regenerator(tmp_path / f"{p}.onnx"), Regenerator(tmp_path / f"{p}.ort")
        np.testing.assert_allclose(a.generate()[0], b.generate()[0], atol=1e-6)


def test_device_runtime_never_imports_torch(exported, tmp_path):
    _, path, _ = exported["hmn"]
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is not on this device')\n")
    code = ("import sys; from edgecond_device import Regenerator; r = Regenerator(sys.argv[1]); "
            "x, y = r.generate(per_class=2); assert 'torch' not in sys.modules; print(x.shape)")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "(20, 1, 8, 8)" in out.stdout


@pytest.mark.parametrize("kind", names())
def test_pixels_come_from_the_graph_as_to_uint8_makes_them(exported, kind):
    _, path, _ = exported[kind]
    r = Regenerator(path)
    images, labels = r.generate()
    pixels, same = r.generate(output="pixels", batch_size=7)
    assert pixels.dtype == np.uint8 and pixels.shape == (len(images), 8, 8, 1) and np.array_equal(labels, same)
    assert np.array_equal(pixels, to_uint8(images, r.mean, r.std))


def test_runtime_takes_any_batch_integer_type_and_onnxruntime_options(exported):
    import onnxruntime as ort

    _, path, _ = exported["hmn"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    r = Regenerator(path, providers=["CPUExecutionProvider"], session_options=so)
    assert r.session.get_providers() == ["CPUExecutionProvider"]
    assert r.run(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0, 1, 8, 8)
    assert r.run([], [], output="pixels").shape == (0, 8, 8, 1)
    assert r.generate(classes=[])[0].shape == (0, 1, 8, 8)
    a = r.run(np.array([3, 1], np.int32), np.array([0, 2], np.int32))
    b = r.run(np.array([3, 1], np.int64), np.array([0, 2], np.int64))
    assert np.array_equal(a, b)
    with pytest.raises(ModelError, match="output must be"):
        r.run([0], [0], output="png")


def test_device_errors(exported, tmp_path):
    _, path, _ = exported["hmn"]
    with pytest.raises(ModelError, match="no such model"):
        Regenerator(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx at all")
    with pytest.raises(ModelError, match="not a loadable ONNX"):
        Regenerator(junk)
    m = onnx.load(str(path))
    del m.metadata_props[:]
    onnx.save(m, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelError, match="without edgecond metadata"):
        Regenerator(tmp_path / "plain.onnx")
    meta = json.loads(onnx.load(str(path)).metadata_props[0].value)
    m = onnx.load(str(path))
    onnx.helper.set_model_props(m, {"edgecond": json.dumps({**meta, "format_version": 9})})
    onnx.save(m, str(tmp_path / "future.onnx"))
    with pytest.raises(ModelError, match="format version 9"):
        Regenerator(tmp_path / "future.onnx")
    r = Regenerator(path)
    with pytest.raises(ModelError, match="class 12 is not in this model"):
        r.generate(classes=[12])
    with pytest.raises(ModelError, match="'cat' is not in this model"):
        r.generate(classes=["cat"])
    with pytest.raises(ModelError, match=f"asked for 999 images per class but this model holds {r.instances_per_class}"):
        r.generate(per_class=999)
    with pytest.raises(ModelError, match="per_class must be an int"):
        r.generate(per_class=2.5)
    with pytest.raises(ModelError, match="sequence"):
        r.generate(classes=3)
    with pytest.raises(ModelError, match="1-D integer"):
        r.run(np.array([0.5]), np.array([0]))


def test_device_cli(exported, tmp_path):
    _, path, _ = exported["hmn"]
    run = CliRunner()
    res = run.invoke(device_main, ["regenerate", str(path), "--per-class", "3", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    z = np.load(tmp_path / "o" / "exemplars.npz", allow_pickle=False)
    assert z["pixels"].shape == (30, 8, 8, 1) and z["pixels"].dtype == np.uint8
    assert np.array_equal(z["pixels"], to_uint8(z["images"], *_norm(path)))
    res = run.invoke(device_main, ["regenerate", str(path), "--per-class", "2", "--out", str(tmp_path / "p"),
                                   "--format", "png", "--classes", "0,9"])
    assert res.exit_code == 0, res.output
    pngs = sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*.png"))
    assert pngs == ["000_0/00000.png", "000_0/00001.png", "009_9/00000.png", "009_9/00001.png", "grid.png"]
    res = run.invoke(device_main, ["regenerate", str(path), "--per-class", "999", "--out", str(tmp_path / "q")])
    assert res.exit_code != 0 and "holds" in res.output and not (tmp_path / "q").exists()
    res = run.invoke(device_main, ["info", str(path), "--json"])
    assert json.loads(res.stdout)["kind"] == "hmn"


def _norm(path):
    r = Regenerator(path)
    return r.mean, r.std


def test_edgecond_export_cli(tmp_path, digits):
    from edgecond.cli import main

    res = condense(digits, "random", 1, out=tmp_path / "run", progress=False)
    out = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx"), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["max_abs_error"] == 0.0
    assert Regenerator(tmp_path / "m.onnx").instances_per_class == res.container.instances_per_class
