import json
import random

import numpy as np
import pytest

from edgecond.continual.harness import STRATEGIES, ContinualConfig, run_strategy, scores
from edgecond.continual.scenario import split_classes

TINY = dict(experiences=2, ipc=10, epochs=1,
            condense_settings={"match.outer": 1, "match.inner": 1, "match.net_steps": 1})


@pytest.fixture(scope="module")
def four(digits):
    return digits.subset([0, 1, 2, 3])


def test_split_keeps_every_class():
    assert split_classes(list(range(10)), 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match="experiences"):
        split_classes([0, 1], 3)


def test_scores_from_matrix():
    groups = [[0, 1], [2, 3]]
    m = [[0.9, 0.0], [0.5, 0.8]]
    s = scores(m, groups)
    assert s["final_accuracy"] == pytest.approx(0.65)
    assert s["average_incremental_accuracy"] == pytest.approx((0.9 + 0.65) / 2)
    assert s["forgetting"] == pytest.approx(0.4)


def test_replay_comes_from_onnxruntime_not_torch(four, tmp_path, monkeypatch):
    """While replay data is read, the torch generator and container loading are unusable."""
    from edgecond import io
    from edgecond.containers.hmn import HMN
    from edgecond.continual import buffers

    reads = []
    original = buffers.HMNBuffer.buffer.fget

    def torch_free_buffer(self):
        def boom(*a, **k):
            raise RuntimeError("replay touched the torch container")
        with monkeypatch.context() as m:
            m.setattr(HMN, "_generate", boom)
            m.setattr(io, "load_container", boom)
            data = original(self)
        reads.append(len(data))
        return data

    monkeypatch.setattr(buffers.HMNBuffer, "buffer", property(torch_free_buffer, buffers.HMNBuffer.buffer.fset))
    res = run_strategy("hmn", four, ContinualConfig(**TINY), seed=0, workdir=tmp_path)
    assert max(reads) > 0
    assert len(res["accuracy_matrix"]) == 2
    assert res["timings"][1]["regenerate_s"] > 0  # the second experience replayed regenerated images


def test_a_seed_reproduces_a_replay_run_whatever_the_global_random_state(four, tmp_path):
    runs = []
    for outside in (1, 2):  # Avalanche's random exemplar selection draws from Python's `random`
        random.seed(outside)
        runs.append(run_strategy("replay", four, ContinualConfig(**TINY), seed=0, workdir=tmp_path)["accuracy_matrix"])
    assert runs[0] == runs[1]


def test_an_hmn_run_does_not_depend_on_finding_its_containers_on_disk(four, tmp_path):
    """Condensing in this process (which reseeds torch) or finding the containers on disk (a
    resumed run, a strategy reusing another's) trains the learner on the same random streams."""
    cfg = ContinualConfig(**{**TINY, "condense_settings": {**TINY["condense_settings"], "match.outer": 2}})
    fresh = run_strategy("hmn", four, cfg, seed=1, workdir=tmp_path)
    cached = run_strategy("hmn", four, cfg, seed=1, workdir=tmp_path)
    assert fresh["timings"][0]["condense_s"] == cached["timings"][0]["condense_s"]  # the same containers
    assert fresh["accuracy_matrix"] == cached["accuracy_matrix"]


@pytest.mark.parametrize("name", [s for s in STRATEGIES if s != "joint"])
def test_equal_bytes_accounting(four, tmp_path, name):
    cfg = ContinualConfig(**TINY)
    res = run_strategy(name, four, cfg, seed=0, workdir=tmp_path)
    budget = res["budget_bytes_fp32"]
    assert budget == 4 * 10 * 64 * 4  # 4 classes x 10 IPC x 64 floats x 4 bytes
    b = res["buffer_bytes"]
    if name in ("naive", "lwf"):
        assert b == 0
    elif name in ("replay", "herding"):
        assert b == budget // 4  # equal floats: 10 uint8 images per class
    elif name == "replay-bytes":
        assert b == budget  # equal bytes: 40 uint8 images per class
    else:  # hmn containers: within the budget, and not leaving much of it unused
        assert 0.9 * budget <= b <= budget
    assert np.array(res["accuracy_matrix"]).shape == (2, 2)


def test_continual_cli(tmp_path):
    from click.testing import CliRunner

    from edgecond.cli import main

    r = CliRunner().invoke(main, ["continual", "--strategies", "naive,replay", "--experiences", "2", "--epochs", "1",
                                  "--loggers", "text,csv", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for name in ("naive", "replay"):
        v = res["strategies"][name]
        assert {"final_accuracy", "average_incremental_accuracy", "forgetting", "buffer_bytes",
                "accuracy_matrix"} <= set(v)
    assert (tmp_path / "accuracy.png").is_file() and (tmp_path / "results.csv").is_file()
    for name in ("naive", "replay"):  # Avalanche's own loggers wrote their metrics
        assert "Top1_Acc_Stream" in (tmp_path / "logs" / f"{name}-s0" / "log.txt").read_text()
        rows = (tmp_path / "logs" / f"{name}-s0" / "csv" / "eval_results.csv").read_text().splitlines()
        assert rows[0].startswith("eval_exp") and len(rows) == 1 + 1 + 2  # header, then exp 0, then exps 0-1
    bad = CliRunner().invoke(main, ["continual", "--strategies", "nope", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown strategy 'nope'" in bad.output
    bad = CliRunner().invoke(main, ["continual", "--loggers", "wandb", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown logger 'wandb'" in bad.output


def test_device_budget_schedule_takes_prefixes(four):
    from edgecond.continual.buffers import HMNBuffer

    buf = HMNBuffer(four, 10, "/nonexistent", 4, schedule=[50, 20, 5])
    for t, want in [(0, 50), (1, 20), (2, 5), (7, 5)]:
        buf.experience = t
        assert buf.per_class_now(57) == min(want, 57)
    assert buf.per_class_now(3) == 3


def test_cached_condensations_are_keyed_by_their_settings(four, tmp_path):
    from edgecond.continual.buffers import HMNBuffer

    def digest(preset="quick", **settings):
        return HMNBuffer(four, 10, tmp_path, 4, preset=preset, settings=settings).settings_digest()

    assert digest() == digest()
    assert len({digest(), digest(outer=1), digest(warm_start=0), digest("paper")}) == 4


def test_buffers_condense_with_the_library_defaults(four, tmp_path):
    """The HMN buffers replay prefixes, so they are condensed as `edgecond condense` would: multisize on."""
    from edgecond.continual.buffers import HMNBuffer

    cfg = HMNBuffer(four, 10, tmp_path, 4).config()
    assert cfg.match.multisize and cfg.prefix_order == "herding" and cfg.kind == "hmn"


def test_shared_hmn_grows_one_model_and_never_changes_earlier_classes(four, tmp_path):
    from edgecond_device import Regenerator

    res = run_strategy("hmn-shared", four, ContinualConfig(**TINY), seed=0, workdir=tmp_path)
    grown = sorted(tmp_path.glob("*-grown.onnx"), key=lambda p: p.stat().st_mtime)
    assert len(grown) == 2  # one model per experience, each replacing the last on the device
    first, last = Regenerator(grown[0], threads=1), Regenerator(grown[1], threads=1)
    assert len(first.classes) == 2 and len(last.classes) == 4
    x0, y0 = first.generate(per_class=first.instances_per_class)
    x1, y1 = last.generate(classes=first.classes, per_class=first.instances_per_class)
    np.testing.assert_allclose(x1, x0, atol=1e-6)  # frozen shared tiers: old classes' images stay put
    assert res["buffer_bytes"] <= res["budget_bytes_fp32"]
    # replay reads the model the device holds now, not one cached from an earlier experience
    from edgecond.continual.buffers import HMNBuffer

    buf = HMNBuffer(four, 10, tmp_path, 4, shared=True)
    for path, n_classes in ((grown[0], 2), (grown[1], 4)):
        buf.models = [(path, list(range(n_classes)))]
        assert len(set(buf.buffer.targets)) == n_classes


def test_reuse_runs_only_the_strategies_a_run_directory_lacks(four, tmp_path, monkeypatch):
    from edgecond.continual import report

    cfg = ContinualConfig(**TINY)
    report.run_continual(four, ["naive"], cfg, seeds=1, out=tmp_path, log=lambda m: None)
    ran = []
    real = report.run_strategy
    monkeypatch.setattr(report, "run_strategy", lambda name, *a, **k: ran.append(name) or real(name, *a, **k))
    res = report.run_continual(four, ["naive", "replay"], cfg, seeds=1, out=tmp_path, log=lambda m: None, reuse=True)
    assert ran == ["replay"] and set(res["strategies"]) == {"naive", "replay"}
    report.run_continual(four, ["naive"], ContinualConfig(**{**TINY, "epochs": 2}), seeds=1, out=tmp_path,
                         log=lambda m: None, reuse=True)  # another configuration: nothing reused
    assert ran == ["replay", "naive"]


def test_interrupted_experience_condensation_resumes_from_its_checkpoint(four, tmp_path):
    """A run killed after its last checkpoint but before writing the container resumes, not restarts."""
    from edgecond.continual.buffers import HMNBuffer
    from edgecond.io import load_container

    buf = HMNBuffer(four, 10, tmp_path, 4, settings={"outer": 2, "inner": 1, "net_steps": 1, "warm_start": 0})
    onnx_path, _ = buf.condense_experience([0, 1])
    run = onnx_path.with_suffix("")
    first, _ = load_container(run)
    first_matching_s = json.loads((run / "report.json").read_text())["matching_seconds"]
    (run / "container.safetensors").unlink()
    onnx_path.unlink()
    buf.condense_experience([0, 1])
    again, _ = load_container(run)
    rep = json.loads((run / "report.json").read_text())
    assert rep["resumed"] is True
    assert rep["condense_seconds"] >= first_matching_s  # the time before the interruption still counts
    for k, v in first.state_dict().items():
        assert np.array_equal(v.numpy(), again.state_dict()[k].numpy()), k
