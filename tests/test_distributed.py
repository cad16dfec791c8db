"""Condensation across ranks on torch.distributed (gloo, 2 CPU processes)."""

import os
import re
import subprocess
import sys

import pytest
import torch

from edgecond.io import load_container

ARGS = ["condense", "--dataset", "digits", "--classes", "0,1,2,3", "--ipc", "10", "--container", "hmn",
        "--set", "update_mode=summed", "--set", "outer=2", "--set", "inner=2", "--set", "checkpoint_every=1",
        "--threads", "1"]


def _run(args, nproc=1, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if nproc == 1:
        cmd = [sys.executable, "-m", "edgecond.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "edgecond.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    r1 = _run([*ARGS, "--out", str(d / "one")])
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = _run([*ARGS, "--out", str(d / "two")], nproc=2)
    assert r2.returncode == 0, r2.stderr[-2000:]
    return d, r2


def test_two_ranks_equal_one(one_and_two):
    d, r2 = one_and_two
    a, meta_a = load_container(d / "one")
    b, _ = load_container(d / "two")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-5, rtol=0), f"{name}: max diff {(x - y).abs().max():.2e}"
    assert "2 ranks" in r2.stderr
    assert meta_a["instances_per_class"] == a.instances_per_class


def test_dead_rank_stops_the_job_and_resume_completes(tmp_path):
    out = tmp_path / "run"
    r = _run([*ARGS, "--out", str(out)], nproc=2, env={"EDGECOND_FAIL_RANK": "1", "EDGECOND_FAIL_AT": "1"})
    assert r.returncode != 0
    assert re.search(r"rank\s*:\s*1\b", r.stderr), r.stderr[-2000:]  # torchrun's summary names rank 1
    assert (out / "checkpoint.pt").is_file() and not (out / "container.safetensors").exists()
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["outer"] == 1
    r = _run([*ARGS, "--out", str(out), "--resume"])  # a 2-rank checkpoint resumes on 1 rank
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "container.safetensors").is_file()


def test_summed_mode_single_process_is_deterministic(digits, tmp_path):
    from edgecond.matching import Matcher
    from helpers import build, cfg_for

    cfg = cfg_for("hmn", settings={"outer": 1, "inner": 2, "net_steps": 1, "update_mode": "summed"})
    runs = []
    for _ in range(2):
        c = build("hmn", digits, 5)
        Matcher(c, digits, cfg).run(progress=False)
        runs.append(c.state_dict())
    for x, y in zip(runs[0].values(), runs[1].values()):
        assert torch.equal(x, y)
