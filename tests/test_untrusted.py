"""Untrusted files and concurrent use: names from files are data, one writer per output, a
failed rerun keeps the finished run, and a checkpoint's identity is the whole matching config.

Real processes where the property is about processes (two writers, a full disk); the device
CLI in-process elsewhere. Every check looks at the file system outside the output too."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgecond.cli import main
from edgecond_device.cli import main as device_main
from edgecond_device.locking import LOCK_NAME, OutputLocked, exclusive
from edgecond_device.names import safe_filename

HOSTILE = ["../" * 12 + "tmp/edgecond-escaped", "/etc/edgecond-abs", "new\nline", "esc\x1b[31mred", "nul\x00byte",
           "x" * 300, "..", ".hidden", "con/../../x", "é中"]


def _tree(root: Path) -> set[tuple[str, int]]:
    return {(str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")}


def _npz(path: Path, names, shape=(8, 8), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    k = len(names)
    x = rng.integers(0, 255, (4 * k, *shape), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(4 * k) % k, x_test=x[:2 * k], y_test=np.arange(2 * k) % k,
             classes=np.array(names))
    return path


def test_safe_filename_has_no_separator_control_or_hidden_part_and_never_collides():
    made = [safe_filename(i, n) for i, n in enumerate(HOSTILE)]
    assert len(set(made)) == len(made)
    for name in made:
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert all(ch.isprintable() for ch in name) and len(name) <= 4 + 64
        assert name not in ("..", ".")


@pytest.mark.parametrize("source", ["dataset", "metadata"])
def test_hostile_class_names_never_write_outside_out(tmp_path, source):
    """From a dataset's `classes` key (condensed, exported, regenerated: no editing at all) and from
    a model whose metadata was edited: every file lands under --out, or nothing is written."""
    r = CliRunner()
    work = tmp_path / "work"
    work.mkdir()
    names = HOSTILE if source == "dataset" else [str(i) for i in range(len(HOSTILE))]
    data = _npz(work / "data.npz", [n.replace("\x00", "") for n in names] if source == "dataset" else names)
    res = r.invoke(main, ["condense", "--dataset", f"npz:{data}", "--ipc", "1", "--container", "random",
                          "--out", str(work / "run")])
    assert res.exit_code == 0, res.output
    model = work / "m.onnx"
    assert r.invoke(main, ["export", str(work / "run"), "--onnx", str(model)]).exit_code == 0
    if source == "metadata":
        m = onnx.load(str(model))
        meta = json.loads(m.metadata_props[0].value)
        meta["classes"] = HOSTILE
        onnx.helper.set_model_props(m, {"edgecond": json.dumps(meta)})
        onnx.save(m, str(model))
    before = _tree(tmp_path)
    escaped = Path("/tmp/edgecond-escaped")
    res = r.invoke(device_main, ["regenerate", str(model), "--format", "png", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert not escaped.exists() and not Path("/etc/edgecond-abs").exists()
    after = _tree(tmp_path)
    new = {p for p, _ in after - before}
    assert new and all(p.startswith("out") for p in new)
    folders = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert len(folders) == len(HOSTILE) and all(f[:3].isdigit() for f in folders)


def test_a_label_far_beyond_any_dataset_is_refused_before_allocating(tmp_path):
    x = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "big.npz", x_train=x, y_train=np.array([0, 1, 0, 10 ** 9]), x_test=x, y_test=np.zeros(4, int))
    res = CliRunner().invoke(main, ["condense", "--dataset", f"npz:{tmp_path / 'big.npz'}", "--ipc", "1",
                                    "--container", "random", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "at most 100,000 classes" in res.output and len(res.output.splitlines()) == 1
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- one writer per output

def test_a_second_writer_is_refused_with_the_holders_pid_and_a_dead_holder_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from edgecond_device.locking import exclusive\n"
        f"with exclusive({str(out)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=f"pid {holder.pid}"):
            with exclusive(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK_NAME).read_text().strip() == str(holder.pid)  # killed: its file stays behind
    with exclusive(out) as lock:  # ... and is taken over: the kernel dropped the dead process's lock
        assert lock.read_text().strip() == str(os.getpid())
    assert not (out / LOCK_NAME).exists()


def test_a_new_folder_removed_by_a_concurrent_process_is_made_again(tmp_path, monkeypatch):
    """Two runs into one new --out both probe it and make it; the first to finish its probe removes
    the folder it made, under the other's feet. The other makes it again (and its lock then
    decides which run proceeds) instead of failing with 'No such file or directory'."""
    import tempfile

    from edgecond import io

    out = tmp_path / "new" / "run"
    real, calls = tempfile.mkstemp, []

    def raced(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            out.rmdir()  # the other process's probe cleaning up
        return real(*args, **kwargs)

    monkeypatch.setattr(io.tempfile, "mkstemp", raced)
    assert io.check_writable(out) == out and len(calls) == 2
    assert not (tmp_path / "new").exists()  # the probe leaves nothing behind

    real_open, opens = os.open, []

    def raced_open(path, *args):
        opens.append(path)
        if len(opens) == 1:
            Path(path).parent.rmdir()  # a holder releasing its lock removed the empty folder
        return real_open(path, *args)

    monkeypatch.setattr(os, "open", raced_open)
    with exclusive(out) as lock:
        assert lock.read_text().strip() == str(os.getpid()) and len(opens) == 2


def _condense_cmd(out: Path, seed: int, outer: int = 25) -> list[str]:
    return [sys.executable, "-m", "edgecond.cli", "condense", "--ipc", "1", "--container", "pixel", "--seed",
            str(seed), "--set", f"match.outer={outer}", "--set", "match.inner=2", "--out", str(out)]


def test_two_condense_processes_into_one_out_one_finishes_the_other_is_refused_before_work(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(_condense_cmd(out, seed), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    winner = [seed for seed, (rc, _) in zip((1, 2), results) if rc == 0][0]
    refused = [err for rc, err in results if rc != 0][0]
    assert "is being written by pid" in refused and "Traceback" not in refused
    assert "outer iterations" not in refused  # refused before any work
    config = json.loads((out / "config.json").read_text())
    report = json.loads((out / "report.json").read_text())
    from edgecond.io import read_meta

    assert config["seed"] == report["seed"] == read_meta(out)["seed"] == winner
    assert not (out / LOCK_NAME).exists()


def test_a_rerun_that_runs_out_of_disk_keeps_the_finished_run(tmp_path):
    out = tmp_path / "run"
    first = subprocess.run(_condense_cmd(out, 1, outer=2), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "checkpoint.pt"}
    limit = 64 * 1024  # the first files fit, the container does not: the rerun dies mid-write

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    again = subprocess.run([*_condense_cmd(out, 2, outer=2)[:-2], "--ipc", "30", "--out", str(out)],
                           capture_output=True, text=True, preexec_fn=small_disk)
    assert again.returncode != 0
    errors = [line for line in again.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in again.stderr and "internal error" not in errors[0], again.stderr
    for name, data in files.items():
        assert (out / name).read_bytes() == data, name
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
    from edgecond.io import load_container

    container, meta = load_container(out)
    assert meta["seed"] == json.loads((out / "config.json").read_text())["seed"] == 1


def test_resuming_at_another_precision_is_refused_naming_it(tmp_path):
    r = CliRunner()
    args = ["condense", "--budget", "5KB", "--set", "match.outer=2", "--set", "match.inner=1",
            "--set", "match.checkpoint_every=1", "--set", "match.warm_start=0", "--out", str(tmp_path / "run")]
    assert r.invoke(main, [*args, "--precision", "fp32"]).exit_code == 0
    (tmp_path / "run" / "container.safetensors").unlink()
    res = r.invoke(main, [*args, "--precision", "int8", "--resume"])
    assert res.exit_code == 1 and "other settings (precision)" in res.output


def test_the_checkpoint_identity_is_every_setting_but_the_listed_ones():
    """A setting added to the config tree is part of the identity unless NOT_IDENTITY names it."""
    from edgecond.checkpoint import NOT_IDENTITY, identity
    from edgecond.config import LEAVES, CondenseConfig

    ident = identity(CondenseConfig(), 0.0)

    def present(key):
        node = ident
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True
    for key in LEAVES:
        excluded = any(key == k or key.startswith(k + ".") for k in NOT_IDENTITY)
        assert present(key) != excluded, key


def test_an_edited_container_is_one_line_not_an_allocation(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    r = CliRunner()
    assert r.invoke(main, ["condense", "--ipc", "1", "--container", "pixel", "--set", "match.outer=1",
                           "--set", "match.inner=1", "--out", str(tmp_path / "run")]).exit_code == 0
    src = tmp_path / "run" / "container.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["edgecond"]), {k: f.get_tensor(k) for k in f.keys()}
    edits = {"a list": [1, 2], "no kind": {k: v for k, v in meta.items() if k != "kind"},
             "unknown config key": {**meta, "config": {**meta["config"], "bogus": 1}},
             "a huge allocation": {**meta, "config": {**meta["config"], "instances": 10 ** 12}}}
    for what, edited in edits.items():
        p = tmp_path / f"{what.replace(' ', '-')}.safetensors"
        save_file(tensors, str(p), metadata={"edgecond": json.dumps(edited)})
        t0 = time.time()
        res = r.invoke(main, ["export", str(p), "--onnx", str(tmp_path / "x.onnx")])
        assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, (what, res.output)
        assert "internal error" not in res.output and time.time() - t0 < 10, what
    assert not (tmp_path / "x.onnx").exists()


def test_every_numeric_setting_has_a_range_and_every_sequence_a_length():
    """A setting added to the tree cannot skip validation: config.BOUNDS covers every numeric leaf."""
    import typing

    from edgecond.config import BOUNDS, LEAVES, SEQUENCES

    for key, t in LEAVES.items():
        args = set(typing.get_args(t)) | {t}
        numeric = bool(args & {int, float}) or any(typing.get_args(a) and set(typing.get_args(a)) & {int, float}
                                                   for a in args)
        if key in SEQUENCES:
            continue
        assert (key in BOUNDS) == (numeric and bool not in args), key
    assert set(SEQUENCES) <= set(LEAVES) and set(BOUNDS) <= set(LEAVES)


@pytest.mark.parametrize("command", ["export", "regenerate"])
def test_a_full_disk_during_export_or_regenerate_is_one_line_and_leaves_nothing(tmp_path, command):
    r = CliRunner()
    run, model = tmp_path / "run", tmp_path / "m.onnx"
    assert r.invoke(main, ["condense", "--ipc", "10", "--container", "random", "--out", str(run)]).exit_code == 0
    assert r.invoke(main, ["export", str(run), "--onnx", str(model)]).exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    args = ({"export": [sys.executable, "-m", "edgecond.cli", "export", str(run), "--onnx", str(out / "m.onnx")],
             "regenerate": [sys.executable, "-m", "edgecond_device.cli", "regenerate", str(model), "--format", "png",
                            "--out", str(out)]})[command]

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # the first bytes fit, the rest do not

    res = subprocess.run(args, capture_output=True, text=True, preexec_fn=small_disk)
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error")]
    assert res.returncode != 0 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "internal error" not in errors[0]
    assert list(out.iterdir()) == []  # no partial model, image or lock left
