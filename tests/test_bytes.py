"""Byte budgets: every kind, condensed at every storage precision, fits the bytes it was given,
holds more values the fewer bytes each takes, and exports to exactly the images it was matched as."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from edgecond_device.units import PRECISIONS

from edgecond.condense import condense
from edgecond.cli import main
from edgecond.kinds import KINDS, get, sized_config, stored_as

TINY = {"match.outer": 1, "match.inner": 2, "match.net_steps": 1, "match.warm_start": 10,
        "match.multisize": False, "prefix_order": "none"}


def settings(kind: str, precision: str) -> dict:
    return {**(TINY if get(kind).matched else {}), "precision": precision}


@pytest.fixture(scope="module")
def condensed(digits):
    """Every (kind, precision) condensed once at 2 IPC of bytes, shared by the tests below."""
    cache = {}

    def get_one(kind, precision):
        if (kind, precision) not in cache:
            cache[kind, precision] = condense(digits, kind, 2, settings=settings(kind, precision), progress=False)
        return cache[kind, precision]
    return get_one


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_fits_the_bytes_at_every_precision(condensed, kind, precision):
    res = condensed(kind, precision)
    meta, cont = res.meta, res.container
    assert meta["budget_bytes"] == 4 * 2 * 64 * 10  # 2 float32 images per class of 8x8 digits
    assert meta["precision"] == cont.precision == precision
    assert meta["stored_bytes"] == cont.stored_bytes() <= meta["budget_bytes"]
    assert sum(cont.parts_bytes().values()) == meta["stored_bytes"]
    # fewer bytes a value, more values: whole images exactly 2x / 4x, parametric kinds nearly so
    fp32 = condensed(kind, "fp32").container.stored_floats()
    gain = {"fp32": 1, "fp16": 2, "int8": 4}[precision]
    if kind in ("pixel", "random", "herding"):
        assert cont.stored_floats() == gain * fp32 and cont.instances_per_class == gain * 2
    else:
        assert cont.stored_floats() >= 0.7 * gain * fp32


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", ["hmn", "pixel", "haba", "random"])
def test_a_container_exports_exactly_what_it_was_matched_as(condensed, tmp_path, kind, precision):
    """By default a container exports at its own precision, and onnxruntime regenerates its images
    at the fp32 tolerance (parity against the values as stored, the ones matching trained)."""
    from edgecond.export import FP32_ATOL, export_onnx
    from edgecond_device import Regenerator, read_metadata

    res = condensed(kind, precision)
    out = export_onnx(res.container, res.meta, tmp_path / "m.onnx")
    assert out["precision"] == precision and out["max_abs_error"] <= FP32_ATOL
    assert out["stored_bytes"] == res.meta["stored_bytes"] <= out["budget_bytes"]
    got, labels = Regenerator(tmp_path / "m.onnx").generate()
    want, _ = res.container.images()
    np.testing.assert_allclose(got, want.numpy(), atol=FP32_ATOL, rtol=0)
    assert read_metadata(tmp_path / "m.onnx")["stored_bytes"] == res.meta["stored_bytes"]
    if precision != "fp32":  # the file saves most of the bytes the precision saves (the graph is the same)
        fp32 = export_onnx(res.container, res.meta, tmp_path / "fp32.onnx", precision="fp32")
        assert fp32["max_abs_error"] <= FP32_ATOL  # the stored values, read at fp32: exact too
        saved = 4 * res.container.stored_floats() - res.meta["stored_bytes"]
        assert fp32["bytes"] - out["bytes"] >= 0.7 * saved  # less a Cast or Dequantize node a tensor


def test_the_file_holds_the_values_as_stored(condensed, tmp_path):
    from edgecond.io import load_container, save_container

    res = condensed("hmn", "int8")
    save_container(tmp_path, res.container, res.meta)
    loaded, meta = load_container(tmp_path)
    assert loaded.precision == "int8" and meta["stored_bytes"] == res.meta["stored_bytes"]
    raw = {k: v for k, v in loaded.state_dict().items() if v.is_floating_point()}
    for name, stored in loaded.values_as_stored(differentiable=False).items():
        assert torch.allclose(raw[name], stored, atol=1e-6, rtol=0)  # rounding committed before writing
    assert torch.equal(loaded.images()[0], res.container.images()[0])


def test_a_file_from_before_byte_budgets_reads_as_fp32_of_its_float_budget(condensed, tmp_path):
    """Containers written before byte budgets had neither `precision` nor `budget_bytes`: they are
    fp32 containers of `budget_floats` float32 values, and info and export read them so."""
    from edgecond.export import export_onnx
    from edgecond.info import describe
    from edgecond.io import load_container
    from safetensors.torch import save_file

    res = condensed("pixel", "fp32")
    old = {k: v for k, v in res.meta.items() if k not in ("precision", "budget_bytes", "stored_bytes")}
    path = tmp_path / "container.safetensors"
    save_file({k: v.contiguous() for k, v in res.container.state_dict().items()}, str(path),
              metadata={"edgecond": json.dumps(old)})
    cont, meta = load_container(path)
    assert cont.precision == meta["precision"] == "fp32" and meta["budget_bytes"] == 4 * old["budget_floats"]
    assert describe(path)["budget_bytes"] == 4 * 2 * 64 * 10
    assert export_onnx(cont, meta, tmp_path / "m.onnx")["budget_bytes"] == 4 * 2 * 64 * 10


@pytest.mark.parametrize("ipc", [2, 5, 10])
def test_the_solver_gives_an_int8_hmn_over_3x_the_values_of_an_fp32_one(digits, ipc):
    from edgecond.condense import settings_for

    counts = {}
    for precision in ("fp32", "int8"):
        cfg = settings_for(digits, "hmn", ipc, settings={"precision": precision})
        cont = stored_as(get("hmn").build(digits, sized_config(get("hmn"), digits, cfg), torch.Generator()), cfg,
                         digits)
        assert cont.stored_bytes() <= 4 * ipc * 64 * 10
        counts[precision] = cont.stored_floats()
    assert counts["int8"] >= 3 * counts["fp32"]


def test_matching_trains_the_stored_values(digits):
    """Quantisation-aware condensation: the matched int8 container differs from the raw values it
    started from, and what it generates is what its stored values generate."""
    res = condense(digits, "hmn", 2, settings=settings("hmn", "int8"), progress=False)
    cont = res.container
    raw = {k: v.clone() for k, v in cont.state_dict().items()}
    cont.commit_storage()  # already committed: a no-op
    assert all(torch.equal(raw[k], v) for k, v in cont.state_dict().items())
    assert res.report["parts_bytes"] == cont.parts_bytes()


def test_cli_budget_in_bytes_and_info_by_tier(tmp_path):
    r = CliRunner()
    out = tmp_path / "run"
    res = r.invoke(main, ["condense", "--container", "random", "--budget", "5KB", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "5,000 budget bytes" in res.output
    info = json.loads(r.invoke(main, ["info", str(out), "--json"]).output)
    assert info["budget_bytes"] == 5000 and info["precision"] == "int8"
    assert info["stored_bytes"] <= 5000 and info["stored_values"] == info["stored_bytes"]  # uint8 pixels
    assert info["instances_per_class"] == 5000 // 10 // 64
    assert sum(info["parts_bytes"].values()) == info["stored_bytes"]
    assert info["parts_stored_as"] == {"pixels": "uint8"}  # 8-bit real images are pixels, no scales
    text = r.invoke(main, ["info", str(out)]).output
    assert "5,000 bytes" in text and "at int8" in text


@pytest.mark.parametrize("args, precision", [(["--budget", "5KB"], "int8"), (["--ipc", "2"], "fp32"),
                                             (["--budget", "5KB", "--precision", "fp32"], "fp32")])
def test_a_byte_budget_is_stored_at_int8_unless_told(tmp_path, args, precision):
    """--budget is the device's unit and stores int8 by default; --ipc keeps the papers' fp32."""
    res = CliRunner().invoke(main, ["config", "--container", "random", *args])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["precision"] == precision


@pytest.mark.parametrize("args, message", [(["--ipc", "1", "--budget", "1KB"], "budget once"),
                                           (["--budget", "12QB"], "not a byte budget"),
                                           (["--budget", "100", "--container", "pixel"], "less than one")])
def test_cli_refuses_bad_budgets(tmp_path, args, message):
    res = CliRunner().invoke(main, ["condense", *args, "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and message in res.output


def test_units_are_written_once():
    """The precision names and bytes per value live in edgecond_device/units.py and the IPC <->
    bytes formula in edgecond/budget.py: no other source file spells them out."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spelled = [re.compile(r'"fp32",\s*"fp16",\s*"int8"'), re.compile(r'"fp32":\s*4\b'),
               re.compile(r"\b4\s*\*\s*(?:math\.prod|np\.prod|int\(np\.prod)"),
               re.compile(r"prod\([^)]*\)\s*\*\s*4\b")]
    homes = {root / "export" / "edgecond_device" / "units.py"}
    found = [f"{p.relative_to(root)}: {m.group(0)}" for p in [*root.glob("edgecond/**/*.py"),
                                                                *root.glob("export/edgecond_device/**/*.py")]
             if p not in homes for rx in spelled for m in rx.finditer(p.read_text())]
    assert not found, found
