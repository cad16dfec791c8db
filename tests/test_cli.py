import json

import pytest
import torch
from click.testing import CliRunner

from edgecond.cli import main
from edgecond.io import load_container


def test_condense_info_evaluate(tmp_path):
    r = CliRunner()
    out = tmp_path / "run"
    res = r.invoke(main, ["condense", "--dataset", "digits", "--ipc", "2", "--container", "random", "--out", str(out),
                          "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)  # exactly one JSON object on stdout; the log went to stderr
    assert report["out"] == str(out) and report["kind"] == "random" and report["config"]["ipc"] == 2
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
                          "--set", "container.decoder=wide", "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "64x32" in res.output and not (tmp_path / "d" / "container.safetensors").exists()
    res = r.invoke(main, ["condense", "--ipc", "5", "--set", "match.outr=3", "--out", str(tmp_path / "e")])
    assert res.exit_code != 0 and "unknown setting 'match.outr'" in res.output
    # a combination the kind cannot do is refused before any work (idc instances cannot be reordered)
    res = r.invoke(main, ["condense", "--ipc", "2", "--container", "idc", "--set", "prefix_order=herding",
                          "--out", str(tmp_path / "f")])
    assert res.exit_code != 0 and "cannot do" in res.output and "prefix_order" in res.output


@pytest.mark.parametrize("args", [["condense", "--ipc", "2", "--container", "random", "--out", "/proc/edgecond-x"],
                                  ["export", "RUN", "--onnx", "/proc/edgecond-x.onnx"]])
def test_unwritable_output_is_one_clear_line(tmp_path, args):
    r = CliRunner()
    run = tmp_path / "run"
    assert r.invoke(main, ["condense", "--ipc", "2", "--container", "random", "--out", str(run)]).exit_code == 0
    res = r.invoke(main, [str(run) if a == "RUN" else a for a in args])
    assert res.exit_code == 1 and "cannot write to /proc" in res.output
    assert "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)  # handled by the command (exit 1), not an escaped error
    assert len(res.stderr.strip().splitlines()) == 1


def test_outputs_respect_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        res = CliRunner().invoke(main, ["condense", "--ipc", "2", "--container", "random", "--out", str(tmp_path)])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    for f in ("container.safetensors", "report.json", "config.json"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o644, f


def test_help_teaches_and_stays_short():
    res = CliRunner().invoke(main, ["condense", "--help"])
    assert res.exit_code == 0 and "images per class" in res.output and "--set" in res.output
    import click

    command = main.get_command(None, "condense")
    options = [p.name for p in command.params if isinstance(p, click.Option)]
    assert len(options) <= 17, options  # the budget (--ipc or --budget), --precision and a few more; the rest are settings: --set / --config


def test_config_file_reruns_the_same_settings(tmp_path):
    """config.json of a run, given back with --config, resolves to the same tree; --set still wins."""
    r = CliRunner()
    out = tmp_path / "a"
    res = r.invoke(main, ["condense", "--ipc", "2", "--container", "pixel", "--set", "outer=1", "--set", "inner=1",
                          "--set", "net_steps=1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "config.json").read_text())
    res = r.invoke(main, ["config", "--config", str(out / "config.json")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == saved
    res = r.invoke(main, ["config", "--config", str(out / "config.json"), "--set", "match.inner=3"])
    assert json.loads(res.stdout)["match"]["inner"] == 3
    b = tmp_path / "b"
    assert r.invoke(main, ["condense", "--config", str(out / "config.json"), "--out", str(b)]).exit_code == 0
    assert load_container(b)[0].state_dict()["pixels"].equal(load_container(out)[0].state_dict()["pixels"])


def test_python_api_and_cli_give_the_same_container(digits, tmp_path):
    """Every default lives in the library: edgecond.condense(...) == `edgecond condense` for the same settings."""
    from edgecond.condense import condense

    settings = {"match.outer": 1, "match.inner": 1, "match.net_steps": 1, "match.warm_start": 5}
    api = condense(digits, "hmn", 5, settings=settings, progress=False)
    out = tmp_path / "cli"
    res = CliRunner().invoke(main, ["condense", "--ipc", "5", "--out", str(out),
                                    *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")]])
    assert res.exit_code == 0, res.output
    cli, meta = load_container(out)
    assert api.config.match.multisize and api.config.prefix_order == "herding"  # the library's hmn defaults
    assert meta["instance_order"] == api.meta["instance_order"]
    for (name, a), b in zip(api.container.state_dict().items(), cli.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("prune", ["random", pytest.param("double-end", marks=pytest.mark.slow)])
def test_condense_hmn_end_to_end_with_pruning_and_multisize(tmp_path, prune):
    """The CLI path users take: over-budget HMN + multisize, pruned back, with every output file."""
    r = CliRunner()
    out = tmp_path / "hmn"
    res = r.invoke(main, ["condense", "--dataset", "digits", "--ipc", "5", "--container", "hmn", "--out", str(out),
                          "--set", "outer=2", "--set", "inner=2", "--set", f"prune.method={prune}"])
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


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign"])
def test_damaged_checkpoint_on_resume_is_one_clear_line(tmp_path, damage):
    out = tmp_path / "run"
    args = ["condense", "--ipc", "2", "--container", "pixel", "--set", "outer=2", "--set", "inner=1",
            "--set", "net_steps=1", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    ck = out / "checkpoint.pt"
    (out / "container.safetensors").unlink()
    if damage == "truncated":
        ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    elif damage == "garbage":
        ck.write_bytes(b"not a checkpoint at all")
    else:
        torch.save({"weights": torch.zeros(3)}, ck)
    res = CliRunner().invoke(main, [*args, "--resume"])
    assert res.exit_code == 1 and str(ck) in res.output and "without --resume" in res.output
    assert "Traceback" not in res.output and not (out / "container.safetensors").exists()


def test_kinds_lists_the_registry_and_the_cli_starts_without_torch():
    import subprocess
    import sys

    from edgecond.kinds import KINDS

    res = CliRunner().invoke(main, ["kinds", "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    assert list(listed) == list(KINDS) and listed["hmn"]["prunable"] and not listed["idc"]["reorderable"]
    # `edgecond --help` and every command's start-up stay fast: the registry (and torch) load on demand
    code = "import sys, edgecond.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
