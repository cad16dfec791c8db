import json

from click.testing import CliRunner

from edgecond.cli import main


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


def test_help_teaches():
    res = CliRunner().invoke(main, ["condense", "--help"])
    assert res.exit_code == 0 and "images per class" in res.output
