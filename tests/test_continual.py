import json
import random

import numpy as np
import pytest

from edgecond.continual import runner
from edgecond.continual.harness import STRATEGIES, ContinualConfig, run_strategy
from edgecond.continual.metrics import class_incremental_scores
from edgecond.continual.scenario import split_classes

TINY = dict(experiences=2, ipc=10, epochs=1,  # accounting and plumbing only: no warm start to speak of
            condense_settings={"match.outer": 1, "match.inner": 1, "match.net_steps": 1, "match.warm_start": 20})


@pytest.fixture(scope="module")
def four(digits):
    return digits.subset([0, 1, 2, 3])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One condensation cache for the strategies that share containers (hmn, hmn-lwf)."""
    return tmp_path_factory.mktemp("models")


def test_split_keeps_every_class():
    assert split_classes(list(range(10)), 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match="experiences"):
        split_classes([0, 1], 3)


def test_the_stream_is_normalised_with_the_first_experience_alone(four):
    from edgecond.continual.scenario import build_stream

    bench, groups, (mean, std) = build_stream(four, 2, seed=0)
    pixels = four.to_pixels(four.x_train)
    first = pixels[np.isin(four.y_train.numpy(), groups[0])]
    assert mean[0] == pytest.approx(float(first.mean()), abs=1e-5)
    assert std[0] == pytest.approx(float(first.std()), abs=1e-5)
    x0 = bench.train_stream[0].dataset[0][0]
    assert abs(float(pixels.mean()) - mean[0]) > 1e-3  # not the whole train split's
    _, _, none = build_stream(four, 2, seed=0, normalise="none")
    assert none is None and float(x0.abs().max()) > 1.0  # standardised, not [0, 1] pixels


def test_scores_from_matrix():
    groups = [[0, 1], [2, 3]]
    m = [[0.9, 0.0], [0.5, 0.8]]
    s = class_incremental_scores(m, [len(g) for g in groups])
    assert s["final_accuracy"] == pytest.approx(0.65)
    assert s["average_incremental_accuracy"] == pytest.approx((0.9 + 0.65) / 2)
    assert s["forgetting"] == pytest.approx(0.4)


def test_scores_with_rows_of_seen_experiences_only():
    """Evaluating only the experiences seen so far leaves the matrix ragged; scores are the same."""
    full = class_incremental_scores([[0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.4, 0.6, 0.7]], [2, 2, 1])
    ragged = class_incremental_scores([[0.9], [0.5, 0.8], [0.4, 0.6, 0.7]], [2, 2, 1])
    for k in full:
        assert full[k] == pytest.approx(ragged[k]), k
    assert ragged["forgetting"] == pytest.approx(((0.9 - 0.4) + (0.8 - 0.6)) / 2)


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
    assert [t["cached"] for t in fresh["timings"]] == [False, False] and all(t["cached"] for t in cached["timings"])
    # the reused run's training time does not subtract a condensation it did not spend
    assert runner._train_seconds([cached], cfg.experiences) > 0
    assert runner._train_seconds([{**cached, "timings": [{"condense_s": 1e6}]}], cfg.experiences) is None


@pytest.mark.parametrize("name", [s for s in STRATEGIES if s != "joint"])
def test_equal_bytes_accounting(four, models, name):
    cfg = ContinualConfig(**TINY)
    res = run_strategy(name, four, cfg, seed=0, workdir=models)
    budget = res["budget_bytes_fp32"]
    assert budget == 4 * 10 * 64 * 4  # 4 classes x 10 IPC x 64 floats x 4 bytes
    b = res["buffer_bytes"]
    if name in ("naive", "lwf"):
        assert b == 0
    elif name in ("replay", "herding"):
        assert b == budget // 4  # equal floats: 10 uint8 images per class
    elif name in ("replay-bytes", "herding-bytes"):
        assert b == budget  # equal bytes: 40 uint8 images per class
    elif name in ("der++", "er-ace", "gdumb", "icarl"):  # Avalanche's own buffers, counted as a device stores them
        per_sample = 64 + (4 * 4 if name == "der++" else 0)  # uint8 pixels (+ DER's fp32 logit per class)
        assert budget - per_sample < b <= budget and b % per_sample == 0
    elif name == "generative":  # the widest VAE whose float32 values fit: one unit wider would not
        from edgecond.continual.generative import sized_hidden, vae_values

        h = sized_hidden((1, 8, 8), budget)
        assert b == 4 * vae_values((1, 8, 8), h) <= budget < 4 * vae_values((1, 8, 8), h + 1)
    else:  # hmn containers: within the budget, and not leaving much of it unused
        assert 0.9 * budget <= b <= budget
    assert np.array(res["accuracy_matrix"]).shape == (2, 2)


def test_a_pixel_stream_replays_condensed_images_in_pixel_space(four, tmp_path):
    res = run_strategy("hmn", four, ContinualConfig(**{**TINY, "normalise": "none"}), seed=0, workdir=tmp_path)
    assert 0.9 * res["budget_bytes_fp32"] <= res["buffer_bytes"] <= res["budget_bytes_fp32"]
    assert res["timings"][1]["regenerate_s"] > 0


def test_continual_cli(tmp_path):
    from click.testing import CliRunner

    from edgecond.cli import main

    r = CliRunner().invoke(main, ["continual", "--strategies", "naive,replay", "--experiences", "2", "--epochs", "1",
                                  "--loggers", "text,csv,tensorboard", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for name in ("naive", "replay"):
        v = res["strategies"][name]
        assert {"final_accuracy", "average_incremental_accuracy", "forgetting", "buffer_bytes",
                "accuracy_matrix"} <= set(v)
        assert v["train_s_per_experience"] > 0 and v["condense_s_per_experience"] is None  # nothing condensed
    assert (tmp_path / "accuracy.png").is_file() and (tmp_path / "results.csv").is_file()
    header, *rows = (tmp_path / "results.csv").read_text().splitlines()
    assert header.endswith("train_s_per_experience,condense_s_per_experience,regenerate_s_per_experience")
    assert len(rows) == 2 and all(float(r.split(",")[-3]) > 0 for r in rows)
    for name in ("naive", "replay"):  # Avalanche's own loggers wrote their metrics
        text = (tmp_path / "logs" / f"{name}-s0" / "log.txt").read_text()
        assert "Top1_Acc_Stream" in text and "Top1_Acc_Seen" in text and "Forgetting_Max" in text
        assert ("BufferBytes" in text) == (name == "replay")
        events = b"".join(p.read_bytes() for p in (tmp_path / "logs" / f"{name}-s0" / "tensorboard").glob("events*"))
        assert b"Top1_Acc_Seen" in events and b"Forgetting_Max" in events  # scalar tags, stored as text
        rows = (tmp_path / "logs" / f"{name}-s0" / "csv" / "eval_results.csv").read_text().splitlines()
        assert rows[0].startswith("eval_exp") and len(rows) == 1 + 2 + 2  # header, then the test stream twice
    bad = CliRunner().invoke(main, ["continual", "--strategies", "nope", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown strategy 'nope'" in bad.output
    bad = CliRunner().invoke(main, ["continual", "--loggers", "wandb", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown logger 'wandb'" in bad.output


def test_cached_condensations_are_keyed_by_their_settings(four):
    from edgecond.continual.harness import strategy_settings

    def digest(preset="quick", **settings):
        return strategy_settings("hmn", four, ContinualConfig(preset=preset, condense_settings=settings))

    assert digest() == digest()
    assert len({digest(), digest(outer=1), digest(warm_start=0), digest("paper")}) == 4
    assert strategy_settings("replay", four, ContinualConfig()) is None


def test_reuse_runs_only_the_strategies_a_run_directory_lacks(four, tmp_path, monkeypatch):
    from edgecond.continual import runner as report

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




# --------------------------------------------------------------------------- the strategy registry

def test_a_toy_strategy_runs_through_edgecond_continual_without_a_library_change(tmp_path, monkeypatch):
    """A strategy defined here -- Naive replaying a fixed 2 real images per class it stores as uint8 --
    is found by name by the CLI, run, scored and its buffer bytes counted."""
    from click.testing import CliRunner

    from edgecond.cli import main
    from edgecond.continual import ExemplarReplay
    from edgecond.continual.strategies import REGISTRY, Strategy

    def two_per_class(setup):
        return [ExemplarReplay(2 * 64 * setup.data.num_classes, setup.data.num_classes)]  # 2 uint8 8x8 images

    toy = Strategy("toy", "Naive with 2 real images per class", "uint8 real images", "1 byte per pixel",
                   plugins=two_per_class)
    monkeypatch.setitem(REGISTRY, "toy", toy)  # removed again after the test
    listed = CliRunner().invoke(main, ["strategies", "--json"])
    assert json.loads(listed.stdout)["toy"]["bytes_rule"] == "1 byte per pixel"
    r = CliRunner().invoke(main, ["continual", "--strategies", "toy", "--experiences", "2", "--epochs", "1",
                                  "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["strategies"]["toy"]
    assert v["buffer_bytes"] == 2 * 64 * 10 and 0 < v["final_accuracy"] <= 1


def test_the_registry_lists_the_fields_comparisons_and_refuses_a_second_registration():
    from edgecond.continual.strategies import REGISTRY, Strategy, register

    assert {"naive", "replay", "replay-bytes", "herding", "herding-bytes", "lwf", "der++", "er-ace", "gdumb", "icarl", "generative",
            "hmn", "hmn-int8", "joint"} <= set(REGISTRY)
    assert all(s.stores and s.bytes_rule for s in REGISTRY.values())
    assert {n for n, s in REGISTRY.items() if s.condenses} == {"hmn", "hmn-fp16", "hmn-int8", "hmn-lwf", "hmn-int8+er-ace"}
    with pytest.raises(ValueError, match="already registered"):
        register(Strategy("naive", "again", "nothing", "nothing"))


# --------------------------------------------------------------------------- the run's config

def test_a_run_reruns_from_its_config_and_set_changes_it(tmp_path):
    """OUT/config.json holds the whole run; --config reproduces its accuracy matrices exactly,
    --set changes a run setting or a condensation one, and an unknown key is one line."""
    from click.testing import CliRunner

    from edgecond.cli import main

    r = CliRunner()
    first = r.invoke(main, ["continual", "--strategies", "naive,replay", "--experiences", "2", "--epochs", "1",
                            "--out", str(tmp_path / "a"), "--json"])
    assert first.exit_code == 0, first.output
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["strategies"] == ["naive", "replay"] and saved["continual"]["epochs"] == 1
    again = r.invoke(main, ["continual", "--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b"),
                            "--json"])
    assert again.exit_code == 0, again.output
    a, b = json.loads(first.stdout)["strategies"], json.loads(again.stdout)["strategies"]
    assert {n: v["accuracy_matrix"] for n, v in a.items()} == {n: v["accuracy_matrix"] for n, v in b.items()}

    changed = r.invoke(main, ["continual", "--config", str(tmp_path / "a" / "config.json"), "--set", "epochs=2",
                              "--set", "strategies=naive", "--set", "match.outer=2", "--out", str(tmp_path / "c"),
                              "--json"])
    assert changed.exit_code == 0, changed.output
    c = json.loads((tmp_path / "c" / "config.json").read_text())
    assert c["continual"]["epochs"] == 2 and c["strategies"] == ["naive"]
    assert c["continual"]["condense_settings"]["match.outer"] == 2

    for bad, says in ((["--set", "nope=1"], "unknown setting 'nope'"), (["--set", "epochs=0"], "epochs=0 is out of range"),
                      (["--set", "match.outer=0"], "match.outer=0 is out of range"),
                      (["--set", "precision=int8"], "precision is not a continual setting")):
        res = r.invoke(main, ["continual", *bad, "--strategies", "hmn", "--out", str(tmp_path / "d")])
        assert res.exit_code != 0 and says in res.output and "Traceback" not in res.output, (bad, res.output)
        assert len(res.output.strip().splitlines()) == 1
        assert not (tmp_path / "d" / "config.json").exists()  # refused before any work


# --------------------------------------------------------------------------- generative replay's VAE

@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 7, 5)])
def test_the_vae_fills_its_bytes_and_generates_in_the_streams_space(shape):
    import torch

    from edgecond.continual.generative import SizedVAE, sized_hidden, vae_values

    d = shape[0] * shape[1] * shape[2]
    budget = 10 * 4 * d * 3  # 3 classes at 10 float32 images each
    h = sized_hidden(shape, budget)
    mean, std = [0.5] * shape[0], [0.25] * shape[0]
    vae = SizedVAE(shape, h, stats=(mean, std))
    values = sum(p.numel() for p in vae.parameters())
    assert values == vae_values(shape, h) and 4 * values <= budget < 4 * vae_values(shape, h + 1)
    torch.manual_seed(0)
    x = vae.generate(5)
    assert x.shape == (5, *shape) and x.min() >= -2 and x.max() <= 2  # sigmoid pixels, (p - 0.5) / 0.25
    rec, mu, logvar = vae(torch.randn(4, *shape))
    assert rec.shape == (4, *shape) and mu.shape == logvar.shape == (4, 16)
    with pytest.raises(ValueError, match="cannot hold a VAE"):
        sized_hidden(shape, 4 * d)  # the output layer's biases alone take the whole budget


def test_icarls_rounded_quotas_stay_within_the_bytes_after_every_experience():
    """Avalanche's iCaRL keeps ceil(memory / classes seen) per class; the memory it is given keeps
    that within the samples the bytes hold at every point of the stream, not only at its end."""
    import math

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from edgecond.continual.strategies import icarl_memory

    @settings(max_examples=200, deadline=None)
    @given(st.integers(1, 2000), st.lists(st.integers(1, 7), min_size=1, max_size=8))
    def check(cap, sizes):
        groups = [list(range(n)) for n in sizes]
        cap = max(cap, sum(sizes))  # _mem_size keeps at least one sample per class
        memory = icarl_memory(cap, groups)
        seen = [sum(sizes[:i + 1]) for i in range(len(sizes))]
        assert 1 <= memory <= cap
        assert all(math.ceil(memory / k) * k <= cap for k in seen)

    check()
