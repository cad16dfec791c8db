"""Every number the README and docs/results.md publish is traceable to a results file.

benchmarks/tables.py renders the tables from benchmarks/results/*.json and checks the prose
(`python benchmarks/tables.py --check`); benchmarks/provenance.py gave every row its provenance.
These tests run both checks and show they can fail: a digit changed in a generated table or in a
quoted mean ± sd is caught."""

import json
import re
import sys
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
tables = pytest.importorskip("tables")  # benchmarks/tables.py (imports benchmarks/common.py)
provenance = pytest.importorskip("provenance")


@pytest.fixture(scope="module")
def sources():
    return tables.sources()


def test_every_table_is_rendered_from_its_results_file():
    stale = [str(p.relative_to(ROOT)) for p, text in tables.outputs().items() if p.read_text() != text]
    assert not stale, f"run python benchmarks/tables.py: {stale}"


def test_every_printed_number_has_a_source(sources):
    for doc in tables.DOCS:
        assert not tables.unsourced((ROOT / doc).read_text(), *sources), doc


def last_digit_changed(number: str) -> str:
    i = max(i for i, c in enumerate(number) if c.isdigit())
    return number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1:]


def test_a_changed_digit_in_a_generated_table_is_stale():
    doc = ROOT / "README.md"
    text = doc.read_text()
    region = tables.REGION.search(text)
    body = region.group("body")
    pair = tables.PAIR.search(body)
    edited = body[:pair.start(2)] + last_digit_changed(pair.group(2)) + body[pair.end(2):]
    assert tables.regenerate(text.replace(body, edited)) == text  # the script puts the number back


def test_a_changed_digit_in_a_quoted_mean_and_sd_is_caught(sources):
    """Every 'mean ± sd' the prose quotes, with the last digit of its mean or of its sd changed,
    is no longer a pair of any results file (so the check fails) -- bar the few that then
    coincide with another row's pair, which must stay rare."""
    pairs, _ = sources
    quoted, escaped = 0, []
    for doc in tables.DOCS:
        text = tables.REGION.sub("", (ROOT / doc).read_text())
        for a, b in tables.PAIR.findall(text):
            if f"{a} ± {b}" in tables.ALLOWED:
                continue
            quoted += 1
            for changed in (f"{last_digit_changed(a)} ± {b}", f"{a} ± {last_digit_changed(b)}"):
                if changed in pairs:
                    escaped.append(changed)
    assert quoted > 50
    assert len(escaped) <= 0.1 * 2 * quoted, escaped


def test_every_results_row_carries_a_commit_and_a_thread_count():
    for f in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        assert not provenance.missing(json.loads(f.read_text())), f.name


def test_the_allow_list_holds_only_numbers_still_printed_and_without_a_source(sources):
    pairs, _ = sources
    printed = set()
    for doc in tables.DOCS:
        text = re.sub(r"`[^`\n]*`", "", (ROOT / doc).read_text())
        printed |= {f"{a} ± {b}" for a, b in tables.PAIR.findall(text)} | set(tables.NUMBER.findall(text))
    assert set(tables.ALLOWED) <= printed, set(tables.ALLOWED) - printed  # stale entries go
    assert not {k for k in tables.ALLOWED if "±" in k} & pairs  # a number that gained a source leaves


def test_spreads_are_sample_standard_deviations():
    from common import fmt, fmt_population

    assert fmt([0.50, 0.52]) == "51.0 ± 1.4"          # sd with n - 1 of (50, 52): 1.414
    assert fmt_population(0.51, 0.01, 2) == "51.0 ± 1.4"  # np.std's 1.0, converted exactly
    assert fmt([0.5]) == "50.0 ± 0.0"


def test_write_stamps_the_rows_an_invocation_made_and_keeps_the_others():
    from common import stamp

    kept = {"commit": "abc123", "threads": 1, "date": "2026-11-22"}
    payload = {"rows": [{"method": "old", "provenance": kept},
                        {"method": "new", "seeds": [0, 1], "accuracies": [0.5, 0.6]}]}
    stamp(payload)
    old, new = payload["rows"]
    assert old["provenance"] is kept
    assert new["provenance"]["commit"] and new["provenance"]["threads"] >= 1
    assert new["provenance"]["per_seed"] == [0.5, 0.6] and not provenance.missing(payload)
    assert provenance.missing({"rows": [{"method": "bare"}]})  # the check can fail


def test_a_backfilled_row_is_traced_by_its_per_seed_values_through_a_rename():
    first = {"dataset": "d", "ipc": 1, "method": "hmn", "accuracies": [0.4, 0.5]}
    renamed = {**first, "method": "hmn-cold"}
    other = {**first, "accuracies": [0.4, 0.6]}
    assert provenance.same(renamed, first) and not provenance.same(other, first)
    hist = [("a" * 40, "2026-11-22T00:00:00", {"rows": [other], "machine": {"torch_threads": 1}}),
            ("b" * 40, "2026-11-23T00:00:00", {"rows": [first], "machine": {"torch_threads": 2}, "command": "x"})]
    sha, date, _ = provenance.origin(renamed, hist)
    assert sha == "b" * 40
    prov = provenance.backfilled("condense", renamed, (sha, date, hist[1][2]))
    assert prov["commit"] == "b" * 12 and prov["threads"] == 2 and prov["backfilled"]
    assert "--method hmn-cold --threads 2" in prov["rerun"]


def test_adopting_a_rerun_keeps_the_values_it_replaces_and_the_headline_says_so(tmp_path, monkeypatch):
    """reproduce.py --adopt: the row takes its rerun's values, the old ones stay under
    `superseded` with the reason, and the headline marks the cell rerun and prints the old values."""
    reproduce = pytest.importorskip("reproduce")
    prov_old = {"date": "2026-11-23T16:28:41", "commit": "aaaa", "machine": "old CPU"}
    prov_new = {"date": "2026-12-07T01:35:00", "commit": "bbbb", "machine": "new CPU"}
    rows = [{"dataset": "cifar10_mini", "ipc": ipc, "method": k, "accuracies": [0.5, 0.52, 0.51], "seeds": [0, 1, 2],
             "accuracy_mean": 0.51, "accuracy_std": 0.01, "provenance": prov_old}
            for ipc in (1, 10) for k in ("random", "pixel", "idc", "haba", "hmn")]
    (tmp_path / "condense.json").write_text(json.dumps({"rows": rows}))
    rerun = {"source": "condense", "dataset": "cifar10_mini", "ipc": 10, "method": "hmn", "published": [0.5, 0.52, 0.51],
             "today": [0.49, 0.5, 0.51], "identical": False, "today_mean_std": [0.5, 0.01], "provenance": prov_new}
    (tmp_path / "reproduce.json").write_text(json.dumps({"rows": [rerun]}))
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path)
    reproduce.adopt("condense", ("cifar10_mini", 10, "hmn"), "another CPU")
    row = next(r for r in json.loads((tmp_path / "condense.json").read_text())["rows"]
               if (r["ipc"], r["method"]) == (10, "hmn"))
    assert row["accuracies"] == [0.49, 0.5, 0.51] and row["provenance"] == prov_new
    assert row["superseded"] == [{"accuracies": [0.5, 0.52, 0.51], "accuracy_mean": 0.51, "accuracy_std": 0.01,
                                  "provenance": prov_old, "until": "2026-12-07", "reason": "another CPU"}]
    monkeypatch.setattr(tables, "payload", lambda name: json.loads((tmp_path / f"{name}.json").read_text()))
    view = tables.headline(json.loads((tmp_path / "condense.json").read_text()))
    assert "**50.0 ± 1.0** ✓" in view  # the adopted values, marked reproduced
    assert "Until 2026-12-07 the hmn cell at 10 IPC read 51.0 ± 1.0 (2026-11-23, commit aaaa, old CPU): another CPU" in view


def test_a_rewritten_continual_section_keeps_the_rows_it_replaces():
    """benchmarks/continual.py rewrites a section from its --strategies: a row rerun with other
    values, or dropped, stays under `superseded` with its run; a row reused unchanged does not."""
    continual = pytest.importorskip("continual")  # benchmarks/continual.py

    def row(acc):
        return {"final_accuracy": acc, "final_accuracy_std": 0.01, "average_incremental_accuracy": 0.6,
                "average_incremental_accuracy_std": 0.0, "forgetting": 0.1, "forgetting_std": 0.0,
                "buffer_bytes": 10, "accuracy_matrix": [[acc]]}

    old = {"date": "2026-11-23T07:00", "command": "python continual.py --old", "seeds": 2,
           "provenance": {"commit": "abc123"}, "strategies": {"same": row(0.5), "rerun": row(0.4), "gone": row(0.3)}}
    new = {"date": "2026-12-07T01:00", "seeds": 2, "strategies": {"same": row(0.5), "rerun": row(0.45)}}
    new["superseded"] = continual.superseded(old, new)
    (run,) = new["superseded"]
    assert set(run["strategies"]) == {"rerun", "gone"} and run["commit"] == "abc123"
    assert run["strategies"]["rerun"]["final_accuracy"] == 0.4 and "accuracy_matrix" not in run["strategies"]["rerun"]
    assert "| gone | 30.0 ± 1.4 |" in continual.superseded_table(new) and "commit abc123" in continual.superseded_table(new)
    assert continual.superseded({**new, "command": "c"}, {**new, "date": "2026-12-08"}) == new["superseded"]
    back = {**new, "strategies": {**new["strategies"], "gone": row(0.3)}}  # a later run holds it again
    assert set(continual.superseded({**new, "command": "c"}, back)[0]["strategies"]) == {"rerun"}
    assert continual.superseded(None, new) == [] and continual.superseded_table({"strategies": {}}) == ""


def test_a_row_of_another_condensation_seed_names_its_variant_and_seed():
    from common import VARIANTS, split_seed, variant

    assert split_seed("hmn-int8-warm-only@seed2") == ("hmn-int8-warm-only", 2)
    assert split_seed("pixel-u8") == ("pixel-u8", 0)
    assert variant("hmn-int8-warm-only@seed2") == VARIANTS["hmn-int8-warm-only"]
    with pytest.raises(SystemExit, match="NAME@seedN"):
        split_seed("hmn-int8@seedx")


def test_a_superseded_row_keeps_its_values_date_and_reason():
    from common import retired, superseded_lines

    prov = {"date": "2026-12-03T20:58:05", "commit": "d6dd4de55b3c"}
    row = {"dataset": "cifar10_mini", "ipc": 1, "method": "hmn-int8", "accuracies": [0.5, 0.502, 0.498],
           "condense_seconds": 1775.0, "provenance": prov, "superseded": [{"accuracies": [0.4], "until": "2026-11-01",
                                                                              "reason": "older", "provenance": {}}]}
    kept = retired(row, "the quick preset changed")
    assert [k["reason"] for k in kept] == ["older", "the quick preset changed"]
    assert kept[-1]["accuracies"] == row["accuracies"] and kept[-1]["provenance"] == prov
    assert "superseded" not in kept[-1] and "method" not in kept[-1]
    text = superseded_lines([{**row, "superseded": kept}])
    assert "hmn-int8: until" in text and "50.0 ± 0.2" in text and "1775 s" in text and "d6dd4de55b3c" in text
    assert superseded_lines([{"method": "x"}]) == ""


def test_a_run_condensed_under_other_settings_is_moved_aside_not_reused(tmp_path):
    import subprocess

    from common import retire_stale

    args = ["--dataset", "digits", "--container", "pixel", "--ipc", "1", "--set", "match.outer=3"]
    out = tmp_path / "digits-pixel-ipc1-s0"
    out.mkdir()
    today = subprocess.run([sys.executable, "-m", "edgecond.cli", "config", *args], check=True,
                           capture_output=True, text=True).stdout
    (out / "config.json").write_text(today)
    retire_stale(out, args)
    assert out.is_dir()  # the same settings: reused
    cfg = json.loads(today)
    del cfg["match"]["warm_lr_schedule"]  # a key added after it was condensed
    (out / "config.json").write_text(json.dumps(cfg))
    retire_stale(out, args)
    assert out.is_dir()  # a run from before a key existed: still today's settings
    cfg["match"]["removed_since"] = 1
    (out / "config.json").write_text(json.dumps(cfg))
    retire_stale(out, args)
    assert not out.exists()  # a key that is gone: not today's settings
    out = tmp_path / "digits-pixel-ipc1-s0-b"
    out.mkdir()
    cfg = json.loads(today)
    cfg["match"]["outer"] = 4  # condensed before a default changed
    (out / "config.json").write_text(json.dumps(cfg))
    retire_stale(out, args)
    assert not out.exists() and f"{out.name}-until-{date.today().isoformat()}" in [p.name for p in tmp_path.iterdir()]


def test_the_default_command_row_condenses_with_the_cli_defaults_and_the_others_plainly():
    import subprocess

    from common import condense_args

    def resolved(*args):
        return json.loads(subprocess.run([sys.executable, "-m", "edgecond.cli", "config", *args], check=True,
                                         capture_output=True, text=True).stdout)

    budget = str(5 * 10 * 64 * 4)  # digits 5 IPC as bytes: `edgecond condense --budget B` stores int8
    cli = resolved("--dataset", "digits", "--budget", budget)
    assert resolved(*condense_args("digits", "hmn-int8-cli", 5, 0)) == cli
    plain = resolved(*condense_args("digits", "hmn-int8", 5, 0))
    assert cli["match"]["multisize"] and not plain["match"]["multisize"] and plain["prefix_order"] == "none"
