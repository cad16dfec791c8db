"""Both wheels build and install into clean virtual environments with only the package index;
the device wheel regenerates images with torch absent. Slow: it builds and installs."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=1200, **kw)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res


def _venv(path: Path) -> Path:
    venv.create(path, with_pip=True, clear=True)
    return path / "bin"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    for src in (ROOT, ROOT / "export"):
        _run(sys.executable, "-m", "build", "--wheel", "--outdir", out, src)
    found = {w.name.split("-")[0]: w for w in out.glob("*.whl")}
    assert set(found) == {"edgecond", "edgecond_device"}, found
    return found


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from edgecond.cli import main

    d = tmp_path_factory.mktemp("model")
    r = CliRunner()
    assert r.invoke(main, ["condense", "--ipc", "2", "--container", "random", "--out", str(d / "run")]).exit_code == 0
    assert r.invoke(main, ["export", str(d / "run"), "--onnx", str(d / "m.onnx"), "--ort"]).exit_code == 0
    return d / "m.onnx"


@pytest.mark.slow
def test_wheels_carry_licence_readme_and_types(wheels):
    import zipfile

    for name, whl in wheels.items():
        files = zipfile.ZipFile(whl).namelist()
        assert any(f.endswith("licenses/LICENSE") for f in files), name
        assert "edgecond_device/py.typed" in files and "edgecond_device/runtime.py" in files
        meta = zipfile.ZipFile(whl).read(next(f for f in files if f.endswith("METADATA"))).decode()
        assert "Version: " in meta and "Description-Content-Type: text/markdown" in meta, name
    full = zipfile.ZipFile(wheels["edgecond"]).namelist()
    assert "edgecond/py.typed" in full and "edgecond/cli.py" in full  # the toolkit carries the runtime too
    assert not any(f.startswith("edgecond/") for f in zipfile.ZipFile(wheels["edgecond_device"]).namelist())


@pytest.mark.slow
def test_device_wheel_regenerates_without_torch(wheels, model, tmp_path):
    bin_ = _venv(tmp_path / "device")
    _run(bin_ / "pip", "install", "-q", f"{wheels['edgecond_device']}[cpu]")
    assert subprocess.run([bin_ / "python", "-c", "import torch"], capture_output=True).returncode != 0
    for m in (model, model.with_suffix(".ort")):
        res = _run(bin_ / "edgecond-device", "regenerate", m, "--per-class", "2", "--out", tmp_path / m.suffix[1:],
                   "--json")
        report = json.loads(res.stdout)
        assert report["images"] == 20 and report["model"]["format"] == m.suffix[1:]
    # without an onnxruntime build: one line saying what to install
    bare = _venv(tmp_path / "bare")
    _run(bare / "pip", "install", "-q", wheels["edgecond_device"])
    res = subprocess.run([bare / "edgecond-device", "info", model], capture_output=True, text=True)
    assert res.returncode != 0 and "edgecond-device[cpu]" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_toolkit_wheel_brings_both_commands(wheels, tmp_path):
    bin_ = _venv(tmp_path / "full")
    # the toolkit's own dependencies are the big ones (torch): checked here without resolving them
    _run(bin_ / "pip", "install", "-q", "--no-deps", wheels["edgecond"])
    _run(bin_ / "pip", "install", "-q", "click", "numpy")
    assert "condense" in _run(bin_ / "edgecond", "--help").stdout
    assert "regenerate" in _run(bin_ / "edgecond-device", "--help").stdout
    res = _run(bin_ / "pip", "show", "edgecond")
    assert "Requires:" in res.stdout and "torch" in res.stdout and "edgecond-device" not in res.stdout
