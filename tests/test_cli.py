import json

import pytest
from click.testing import CliRunner

from edgecond.cli import main
from edgecond.io import load_container


def test_condense_info_evaluate(tmp_path):
    r = CliRunner()
    out = tmp_path / "run"
    res = r.invoke(main, ["condense", "--dataset", "digits", "--ipc", "2", "--container", "random", "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["info", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["budget_floats"] == info["stored_floats"] == 2 * 10 * 64
    assert info["instances_per_class"] == 2 and info["classes"] == [str(i) for i in range(10)]
    res = r.invoke(main, ["evaluate", str(out), "--seeds", "2", "--steps", "30", "--json"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert set(ev) >= {"accuracy_mean", "accuracy_std", "accuracies"} and len(ev["accuracies"]) == 2


def test_clear_errors(tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["condense", "--dataset", "bogus", "--ipc", "1", "--container", "random",
                          "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "unknown dataset 'bogus'" in res.output
    assert not (tmp_path / "o").exists()  # nothing written on failure
    res = r.invoke(main, ["evaluate"])
    assert res.exit_code != 0 and "--full" in res.output
    junk = tmp_path / "junk.safetensors"
    junk.write_text("hello")
    res = r.invoke(main, ["info", str(junk)])
    assert res.exit_code != 0 and "not a safetensors" in res.output
    res = r.invoke(main, ["condense", "--dataset", "digits", "--ipc", "5", "--container", "hmn",
                          "--decoder-widths", "wide", "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "64x32" in res.output and not (tmp_path / "d").exists()


def test_help_teaches():
    res = CliRunner().invoke(main, ["condense", "--help"])
    assert res.exit_code == 0 and "images per class" in res.output


@pytest.mark.parametrize("prune", ["random", pytest.param("double-end", marks=pytest.mark.slow)])
def test_condense_hmn_end_to_end_with_pruning_and_multisize(tmp_path, prune):
    """The CLI path users take: over-budget HMN + multisize, pruned back, with every output file."""
    r = CliRunner()
    out = tmp_path / "hmn"
    res = r.invoke(main, ["condense", "--dataset", "digits", "--ipc", "5", "--container", "hmn", "--out", str(out),
                          "--outer", "2", "--inner", "2", "--prune", prune, "--prefix-order", "herding"])
    assert res.exit_code == 0, res.output
    figures = ("aum.png", "pruned.png") if prune == "double-end" else ()
    for f in ("container.safetensors", "report.json", "samples.png", "loss.png", *figures):
        assert (out / f).is_file(), f
    report = json.loads((out / "report.json").read_text())
    assert report["stored_floats"] <= report["budget_floats"]
    assert report["pruning"]["instances_after"] == report["instances_per_class"] < report["pruning"]["instances_before"]
    assert "multisize" in report and report["pruning"]["protect"] >= 1
    assert report["prefix_order"]["protect"] == report["pruning"]["protect"]
    order = load_container(out)[1]["instance_order"]
    assert len(order) == 10 and all(len(set(o)) == len(o) == report["instances_per_class"] for o in order)
    p = report["pruning"]["protect"]
    assert all(o[:p] == list(range(p)) for o in order)  # the multisize-trained prefix survives both steps
    info = json.loads(r.invoke(main, ["info", str(out), "--json"]).stdout)
    assert set(info["parts"]) == {"dataset_memory", "class_memory", "instance_memory", "feature_extractors", "decoder"}
    res = r.invoke(main, ["evaluate", str(out), "--seeds", "1", "--steps", "20", "--subsets", "1,2", "--json"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)["subsets"]) == {"1", "2"} and (out / "subsets.png").is_file()
