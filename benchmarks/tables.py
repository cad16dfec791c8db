"""Every results table, rendered from benchmarks/results/*.json -- and the check that the README and
docs/results.md print only numbers those files hold.

    python benchmarks/tables.py            # rewrite results/*.md and the generated regions of the docs
    python benchmarks/tables.py --check    # exit 1 if anything is stale or a printed number has no source

Three things, from the results files alone (nothing is re-measured):

1. results/<recipe>.md for every recipe with a `table(payload)` (RECIPES): its header (the
   invocation that last wrote the file) and its table, rendered again from results/<recipe>.json.
2. The generated regions of README.md and docs/results.md, between
   `<!-- tables.py: SPEC -->` and `<!-- /tables.py -->`. SPEC is `RECIPE [key=value ...]` (the
   recipe's table over the rows whose fields equal the values) or a named view (VIEWS, e.g. the
   README's headline table).
3. The printed numbers (--check): every `mean ± sd` in README.md and docs/results.md must be the
   mean and sample standard deviation of per-seed values some results file holds, and every other
   decimal number must be a value of a results file at its printed precision (as a percentage when
   the value is a fraction), a number of a results table, or an entry of ALLOWED with the reason it
   has no results file (derived arithmetic, settings, the papers' figures).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path


from common import RESULTS, fmt, header
from edgecond.io import atomic_write_text

ROOT = RESULTS.parents[1]
DOCS = ("README.md", "docs/results.md")
# what a recipe's .md holds after its table (a figure the recipe draws)
EXTRA = {"bytes": "\n\n![accuracy at equal bytes](bytes.png)"}
RECIPES = ("baselines", "bytes", "capacity", "condense", "continual", "frontier", "multisize", "pruning", "reproduce",
           "speed")
REGION = re.compile(r"(<!-- tables\.py: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /tables\.py -->)", re.S)
PAIR = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s+±\s+(\d+(?:\.\d+)?)")
NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]*\d)|(?<![\w.])\d+\.\d+(?![\d.]*\d)")


def payload(recipe: str) -> dict:
    return json.loads((RESULTS / f"{recipe}.json").read_text())


def recipe_table(recipe: str, data: dict) -> str:
    return importlib.import_module(recipe).table(data)


# ------------------------------------------------------------------------------------- views

def headline(data: dict) -> str:
    """README: cifar10_mini, every container's plain quick row at 1 and 10 IPC (condense.json),
    each cell marked with its latest rerun (reproduce.json): identical seed for seed, or not."""
    kinds = ("random", "pixel", "idc", "haba", "hmn")
    rows = {(r["ipc"], r["method"]): r for r in data["rows"] if r["dataset"] == "cifar10_mini"}
    reruns = {(r["ipc"], r["method"]): r for r in payload("reproduce")["rows"]
              if (r["source"], r["dataset"]) == ("condense", "cifar10_mini")}
    lines = ["| IPC | random | pixel (IDC-I) | idc | haba | **hmn** |", "|---|---|---|---|---|---|"]
    for ipc in (1, 10):
        cells = []
        for k in kinds:
            r = rows[(ipc, k)]
            cell = fmt(r["accuracies"]) + (f" ({len(r['seeds'])} seeds)" if len(r["seeds"]) != 3 else "")
            cell = f"**{cell}**" if k == "hmn" else cell
            rerun = reruns.get((ipc, k))
            if rerun:  # the row holds what the rerun gave (reproduce.py --adopt may have made it so)
                cell += " ✓" if rerun["today"] == r["accuracies"] else f" ✗ (rerun: {fmt(rerun['today'])})"
            cells.append(cell)
        lines.append(f"| {ipc} | " + " | ".join(cells) + " |")
    dates = sorted({r["provenance"]["date"][:10] for r in reruns.values()})
    lines += ["", f"✓: rerun with `python benchmarks/reproduce.py --source condense --dataset cifar10_mini --ipc N "
                  f"--method KIND --threads 1` ({', '.join(dates) or 'none yet'}, "
                  f"{next(iter(reruns.values()))['provenance']['machine'] if reruns else ''}): identical seed for "
                  "seed; ✗: the rerun differs (it is shown); unmarked: not rerun yet (results/reproduce.md)."]
    for (ipc, k), r in sorted(rows.items()):
        for old in r.get("superseded", []) if k in kinds else []:
            p = old["provenance"]
            lines.append("")
            lines.append(f"Until {old['until']} the {k} cell at {ipc} IPC read {fmt(old['accuracies'])} "
                         f"({p.get('date', '')[:10]}, commit {p.get('commit', '?')}, {p.get('machine', 'CPU not recorded')}): "
                         f"{old['reason']}")
    return "\n".join(lines)


VIEWS = {"headline": ("condense", headline)}


def select(data: dict, filters: dict) -> dict:
    key = "rows" if "rows" in data else "results"
    return {**data, key: [r for r in data[key] if all(r.get(k) == v for k, v in filters.items())]}


def render(spec: str) -> str:
    name, *terms = spec.split()
    filters = {}
    for t in terms:
        k, v = t.split("=", 1)
        try:
            filters[k] = json.loads(v)
        except json.JSONDecodeError:
            filters[k] = v
    if name in VIEWS:
        recipe, view = VIEWS[name]
        return view(select(payload(recipe), filters))
    if name not in RECIPES:
        raise SystemExit(f"tables.py: unknown table {name!r} (recipes: {', '.join(RECIPES)}; views: {', '.join(VIEWS)})")
    return recipe_table(name, select(payload(name), filters))


def regenerate(text: str) -> str:
    return REGION.sub(lambda m: m.group(1) + render(m.group("spec")).rstrip("\n") + "\n" + m.group(4), text)


def outputs() -> dict[Path, str]:
    """Every generated file as it should read: results/<recipe>.md and the docs with fresh regions."""
    out = {}
    for r in RECIPES:
        if not (RESULTS / f"{r}.json").is_file():  # a recipe not run yet
            continue
        data = payload(r)
        out[RESULTS / f"{r}.md"] = header(data) + recipe_table(r, data) + EXTRA.get(r, "") + "\n"
    for doc in DOCS:
        out[ROOT / doc] = regenerate((ROOT / doc).read_text())
    return out


# ----------------------------------------------------------------------------- number check

# printed numbers without a results file, each with why (derived arithmetic, settings, papers)
ALLOWED: dict[str, str] = {
    # not results: settings, dataset facts, the papers' figures
    "100,000": "edgecond.data.MAX_CLASSES, a limit",
    "5,000": "the size of CIFAR-10's test split",
    "4,000": "a setting: the quick preset's wide-decoder warm start (edgecond/kinds/hmn.py)",
    "0.999": "a test's tolerance (tests/test_compute_dtype.py), not a measurement",
    "5.2": "the MDC paper's reported gain on full CIFAR-10",
    "5,697": "the budget solver's decoder size (edgecond.budget; `edgecond info` prints it), not a measurement",
    "46,787": "the budget solver's decoder size (edgecond.budget; `edgecond info` prints it), not a measurement",
    # derived arithmetic on sourced numbers
    "3.4": "56.7 - 53.3, the bytes rows hmn-int8 and hmn-int8-i280-cycle at cifar10_mini 10 IPC",
    "6,030": "the fp32 .onnx's bytes minus its stored values' bytes (results/device-quick.json)",
    "1.26": "a ratio of two speed rows (results/speed.md: 1,078 / 855 ms)",
    "1.8": "a difference of two multisize rows (results/multisize.md, S_[42] with and without the subset loss)",
    # measured once and not kept; each sentence quoting one says so ('not kept'). Spreads printed
    # as np.std's population value then (n = 3 unless the sentence says otherwise)
    "24.6": "a multisize run with delta t = 4, one evaluation seed, 2026-11-23, not kept",
    "49.14": "the 10-IPC pixel container evaluated at 2 threads, seed 0, 2026-12-06, not kept",
    "9.9": "the removed hmn-shared variant's loss, 2026-11-22, not kept",
    "52.0 ± 0.3": "a second condensation seed of the 10-IPC hmn row, run by hand on 2026-11-22, not kept",
    "92.8 ± 1.2": "digits continual rerun through the public API before results were kept per seed",
    "92.6 ± 0.4": "digits continual rerun through the public API before results were kept per seed",
    "96.0 ± 0.7": "digits continual hmn-int8 under the earlier protocol, not kept",
    "91.4 ± 1.7": "digits continual with whole-split statistics, not kept",
    "93.1 ± 0.8": "digits continual with whole-split statistics, not kept",
    "95.8 ± 0.1": "digits continual with whole-split statistics, not kept",
    "92.3 ± 1.0": "digits continual with --normalise none, not kept as a table",
    "90.8 ± 1.5": "the removed hmn-shared strategy, 2026-11-22, not kept",
    "50.8 ± 0.1": "a pruning run at beta 0.6 chosen on val, not kept",
}


def _walk(x, floats: list, lists: list) -> None:
    if isinstance(x, dict):
        for v in x.values():
            _walk(v, floats, lists)
    elif isinstance(x, list):
        nums = [v for v in x if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) == len(x) and len(nums) >= 2:
            lists.append(nums)
        for v in x:
            _walk(v, floats, lists)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        floats.append(float(x))


def sources() -> tuple[set[str], set[str]]:
    """(pairs, numbers): every 'mean ± sd' the per-seed lists of the results files give (percent,
    sample sd), and every number they hold at the precisions tables print."""
    floats, lists = [], []
    for f in sorted(RESULTS.rglob("*.json")):
        _walk(json.loads(f.read_text()), floats, lists)
    pairs = set()
    for vals in lists:
        for scale in (100, 1):
            pairs.add(fmt([v * scale / 100 for v in vals]))
    numbers = set()
    for v in floats:
        for x in {v, 100 * v} if abs(v) <= 1 else {v}:
            for d in range(0, 4):
                numbers.add(f"{x:.{d}f}")
                numbers.add(f"{x:,.{d}f}")
    for f in sorted(RESULTS.rglob("*.md")):  # rendered from the json (and checked current) above
        numbers |= set(NUMBER.findall(f.read_text()))
        pairs |= {f"{a} ± {b}" for a, b in PAIR.findall(f.read_text())}
    return pairs, numbers


def unsourced(text: str, pairs: set[str], numbers: set[str]) -> list[str]:
    """The numbers of `text` no results file holds and ALLOWED does not list (code spans and the
    generated regions are skipped: commands and settings, and what tables.py itself wrote)."""
    text = REGION.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    bad = [f"{a} ± {b}" for a, b in PAIR.findall(text) if f"{a} ± {b}" not in pairs | set(ALLOWED)]
    rest = PAIR.sub("", text)
    bad += [n for n in NUMBER.findall(rest) if n not in numbers and n not in ALLOWED]
    return sorted(set(bad))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale or unsourced")
    args = ap.parse_args()
    problems = []
    for path, text in outputs().items():
        if args.check:
            if path.read_text() != text:
                problems.append(f"{path.relative_to(ROOT)} is stale: run python benchmarks/tables.py")
        elif path.read_text() != text:
            atomic_write_text(path, text)
            print(f"rewrote {path.relative_to(ROOT)}")
    pairs, numbers = sources()
    for doc in DOCS:
        for n in unsourced((ROOT / doc).read_text(), pairs, numbers):
            problems.append(f"{doc}: {n} is in no results file (and not in tables.ALLOWED)")
    print("\n".join(problems) or "tables: every table current, every printed number sourced")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
