"""Fault injection: SIGKILL real `edgecond` processes at seeded random moments, resume, compare.

Each trial runs a command in a subprocess, kills it (after a seeded random delay, or at a
named write point in the middle of a file write: edgecond/faults.py), checks that every file
under a real name is complete and readable, restarts it with --resume, and repeats until it
finishes. The result must equal an uninterrupted run's bit for bit: condensation draws its
randomness from (seed, outer iteration) and checkpoints the whole matching state; export is
a pure function of the container; continual training is seeded per (strategy, seed). Random
delays that outlast the process land no kill and are not counted.

The default run kills a small condensation 3+ times; `-m slow` kills condense, export and
continual 20+ times in all.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgecond.io import TEMPORARY, load_container

CONDENSE = ["condense", "--ipc", "2", "--threads", "1", "--set", "outer=6", "--set", "inner=1",
            "--set", "net_steps=1", "--set", "checkpoint_every=1", "--set", "warm_start=10",
            "--set", "prune.method=random"]
CONTINUAL = ["continual", "--experiences", "2", "--strategies", "naive,hmn,replay",
             "--epochs", "1", "--budget-ipc", "5", "--threads", "1", "--set", "outer=3", "--set", "inner=1",
             "--set", "net_steps=1", "--set", "checkpoint_every=1", "--set", "warm_start=10"]


def _command(args: list[str], out: Path, resume: bool) -> list[str]:
    more = ["--resume"] if resume and args[0] != "export" else []
    target = ["--onnx", str(out)] if args[0] == "export" else ["--out", str(out)]
    return [sys.executable, "-m", "edgecond.cli", *args, *target, *more]


def _env(kill_at: str | None = None) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("EDGECOND_KILL_AT", None)
    if kill_at:
        env["EDGECOND_KILL_AT"] = kill_at
    return env


def uninterrupted(args: list[str], out: Path) -> float:
    t0 = time.time()
    res = subprocess.run(_command(args, out, False), env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    return time.time() - t0


def files_are_whole(out: Path) -> None:
    """Every file under a real name is complete; a finished run's files belong together."""
    from PIL import Image

    from edgecond_device import Regenerator

    root = out if out.is_dir() else out.parent
    for p in root.rglob("*"):
        if p.is_dir() or TEMPORARY.match(p.name):
            continue
        if p.name.endswith(".safetensors"):
            load_container(p)
        elif p.name == "checkpoint.pt":
            torch.load(p, weights_only=True)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".png":
            Image.open(p).verify()
        elif p.suffix == ".onnx":
            Regenerator(p)
    for c in root.rglob("container.safetensors"):  # written last: the rest of its run is there
        report = json.loads((c.parent / "report.json").read_text())
        assert report["instances_per_class"] == load_container(c)[1]["instances_per_class"]


def kill_and_resume(args: list[str], out: Path, rng: random.Random, span: float, write_points: list[str],
                    max_kills: int) -> int:
    """Run `args` to completion, SIGKILLing it `max_kills` times; returns the kills that landed.

    Odd attempts are killed in the middle of a write to one of `write_points`, even ones after a
    random delay within `span` (an uninterrupted run's duration). A run that finishes before
    its kills are spent is started again from nothing, so every kill hits unfinished work."""
    kills, attempt = 0, 0
    while True:
        by_write = kills < max_kills and attempt % 2 == 1 and bool(write_points)
        kill_at = f"write:{rng.choice(write_points)}:{rng.randint(1, 2)}" if by_write else None
        proc = subprocess.Popen(_command(args, out, attempt > 0), env=_env(kill_at), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        if kills < max_kills and not by_write:
            try:
                proc.wait(timeout=rng.uniform(0.05, 0.8) * span)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=900)
        attempt += 1
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            files_are_whole(out)
            continue
        assert proc.returncode == 0, err[-2000:]
        if kills >= max_kills:
            return kills
        assert attempt < 6 * max_kills, f"only {kills} of {max_kills} kills landed in {attempt} attempts"
        shutil.rmtree(out) if out.is_dir() else out.unlink()  # finished too soon: again, from nothing
        attempt = 0


def no_temporaries_left(out: Path) -> None:
    root = out if out.is_dir() else out.parent
    left = [p for p in root.rglob("*") if TEMPORARY.match(p.name)]
    assert not left, left


def same_container(a: Path, b: Path) -> None:
    ca, ma = load_container(a)
    cb, mb = load_container(b)
    assert ma["instance_order"] == mb["instance_order"]
    for (name, x), y in zip(ca.state_dict().items(), cb.state_dict().values()):
        assert torch.equal(x, y), name


def test_killed_condensation_resumes_to_the_same_container(tmp_path):
    """Default run: 3+ SIGKILLs (random moments and mid-checkpoint-write) of a pruned HMN run
    (herding order, which doubles the run, is left to the slow test)."""
    args = [*CONDENSE, "--set", "prefix_order=none"]
    ref = tmp_path / "ref"
    span = uninterrupted(args, ref)
    killed = tmp_path / "killed"
    kills = kill_and_resume(args, killed, random.Random(0), span, ["checkpoint.pt"], max_kills=3)
    assert kills >= 3
    same_container(ref, killed)
    no_temporaries_left(killed)


# the slow run: 10 + 6 + 5 = 21 kills across condense, export and continual


@pytest.mark.slow
def test_killed_condensation_with_herding_and_pruning_loses_nothing(tmp_path):
    """10 kills: random moments and mid-write of the checkpoint, the report and the container."""
    rng, total = random.Random(1), 0
    ref = tmp_path / "ref"
    span = uninterrupted(CONDENSE, ref)
    for trial in range(2):
        out = tmp_path / f"condense{trial}"
        total += kill_and_resume(CONDENSE, out, rng, span, ["checkpoint.pt", "report.json", "container.safetensors"],
                                 max_kills=5)
        same_container(ref, out)
        no_temporaries_left(out)
    assert total >= 10


@pytest.mark.slow
def test_killed_export_leaves_no_partial_model(tmp_path):
    """6 kills: a model is either absent or whole, and the finished one is byte-identical."""
    rng, total = random.Random(2), 0
    run = tmp_path / "run"
    uninterrupted([*CONDENSE, "--set", "prefix_order=none"], run)
    export = ["export", str(run)]
    span = uninterrupted(export, tmp_path / "ref.onnx")
    for trial in range(2):
        out = tmp_path / f"export{trial}" / "model.onnx"
        total += kill_and_resume(export, out, rng, span, ["model.onnx"], max_kills=3)
        assert out.read_bytes() == (tmp_path / "ref.onnx").read_bytes()
        no_temporaries_left(out)
    assert total >= 6


@pytest.mark.slow
def test_killed_continual_run_resumes_to_the_same_results(tmp_path):
    """5 kills: finished seeds, the HMN condensations' checkpoints and exported models survive;
    the accuracy matrices equal an uninterrupted run's."""
    span = uninterrupted(CONTINUAL, tmp_path / "ref")
    out = tmp_path / "killed"
    kills = kill_and_resume(CONTINUAL, out, random.Random(3), span, ["checkpoint.pt", "results.json",
                                                                     "naive-s0.json"], max_kills=5)
    a = json.loads((tmp_path / "ref" / "results.json").read_text())["strategies"]
    b = json.loads((out / "results.json").read_text())["strategies"]
    assert list(a) == list(b)
    for name in a:
        assert [r["accuracy_matrix"] for r in a[name]["runs"]] == [r["accuracy_matrix"] for r in b[name]["runs"]]
        assert a[name]["buffer_bytes"] == b[name]["buffer_bytes"]
    no_temporaries_left(out)
    assert kills >= 5
