"""Class-incremental learning at equal buffer bytes (HMN paper Sec. 4.6 at our scale).

    python benchmarks/continual.py --datasets digits --seeds 3
    python benchmarks/continual.py                     # digits and cifar10_mini, two budgets each

5 experiences x 2 classes, class order and initialisation from the seed; every strategy of
`edgecond continual` (see edgecond/continual/harness.py) at the same buffer budget.
Condensations are cached under benchmarks/runs/continual-*/models and shared by the HMN
strategies; strategies whose results a run directory already holds for the same configuration
and seeds are reused, so adding a strategy runs only that one (--fresh redoes them all); each
finished (strategy, seed) is kept in results/continual-seeds/, so a run longer than a session
resumes on another machine from the committed files.
Writes results/continual.{json,md} and results/continual-<dataset>-ipc<B>.png; sections for
other datasets or budgets already in results/continual.json are kept, each with its own command.
A section is rewritten from --strategies; the rows it replaces with other values, or drops, are
kept under the section's `superseded` with their run's date, commit and command.
"""

from __future__ import annotations

import json
from pathlib import Path

from common import PLAIN, RESULTS, command, fmt, fmt_population, machine, parse, parser, short, verdict_table, write
from edgecond.continual.harness import STRATEGIES, ContinualConfig
from edgecond.continual.strategies import REGISTRY
from edgecond.continual.runner import plot_seen_accuracy, run_continual, timing_cells
from edgecond.data import load_dataset

BUDGETS = {"digits": [10, 20], "cifar10_mini": [1, 10]}
RUNS = Path(__file__).resolve().parent / "runs"


SUMMARY = ("final_accuracy", "average_incremental_accuracy", "forgetting")


def cells(v: dict, seeds: int) -> list[str]:
    """One strategy's final, average incremental and forgetting as 'mean ± sample sd' in percent
    (runs before 2026-12-06 kept np.std's population value: common.fmt_population converts it exactly)."""
    return [fmt(v[f"{k}_per_seed"]) if f"{k}_per_seed" in v else fmt_population(v[k], v[f"{k}_std"], seeds)
            for k in SUMMARY]


def strategies_table(entry: dict) -> str:
    """One section's table: every strategy's means ± sample sd over its seeds."""
    lines = ["| strategy | final accuracy (%) | average incremental (%) | forgetting (%) | buffer bytes | "
             "train + eval s / exp | condense s / exp | regenerate s / exp |", "|---|---|---|---|---|---|---|---|"]
    for name, v in entry["strategies"].items():
        lines.append(f"| {name} | {' | '.join(cells(v, entry['seeds']))} | {v['buffer_bytes']:,} | "
                     f"{' | '.join(timing_cells(v))} |")
    return "\n".join(lines) + "\n"


def superseded(previous: dict | None, entry: dict) -> list[dict]:
    """The rows of the section `entry` replaces that it does not hold with the same values (rerun with
    other results, or not rerun), kept beside it with the run they came from; earlier ones carry over
    unless `entry` holds them again with the same values (a partial run dropped them, a later one
    reused them). A rewrite that reuses every row it keeps supersedes nothing."""
    if previous is None:
        return []

    def gone(rows: dict) -> dict:
        held = entry["strategies"]
        return {n: {k: v[k] for k in v if k.startswith(SUMMARY) or k == "buffer_bytes"} for n, v in rows.items()
                if n not in held or any(v.get(k) != held[n].get(k) for k in SUMMARY)}

    old = [{**run, "strategies": gone(run["strategies"])} for run in previous.get("superseded", [])]
    old = [run for run in old if run["strategies"]]
    rows = gone(previous["strategies"])
    if not rows:
        return old
    return old + [{"date": previous["date"], "until": entry["date"], "command": previous["command"],
                   "commit": previous.get("provenance", {}).get("commit"), "seeds": previous["seeds"],
                   "strategies": rows}]


def superseded_table(entry: dict) -> str:
    """The superseded rows under a section's table, one block per run they came from."""
    blocks = []
    for run in entry.get("superseded", []):
        lines = [f"Superseded on {run['until'][:10]}: rows of the {run['date'][:10]} run "
                 f"(commit {run['commit'] or 'unknown'}, `{run['command']}`), {run['seeds']} seeds:\n",
                 "| strategy | final accuracy (%) | average incremental (%) | forgetting (%) | buffer bytes |",
                 "|---|---|---|---|---|"]
        lines += [f"| {name} | {' | '.join(cells(v, run['seeds']))} | {v['buffer_bytes']:,} |"
                  for name, v in run["strategies"].items()]
        blocks.append("\n".join(lines) + "\n\n")
    return "".join(blocks)


BASELINES = ("replay", "replay-bytes", "herding", "herding-bytes", "der++", "er-ace", "gdumb", "icarl", "generative")


def best_condensed(at: dict) -> dict | None:
    """The condensing strategy (the registry's `condenses`) with the best mean, of one section's rows."""
    condensing = [r for m, r in at.items() if m in REGISTRY and REGISTRY[m].condenses]
    return max(condensing, key=lambda r: r["accuracy_mean"]) if condensing else None


def verdicts(entry: dict) -> str:
    """Final accuracy over the seeds: the best condensing strategy against each exemplar strategy and
    generative replay (common.verdict_table); sections that kept no per-seed values have none."""
    rows = [{"dataset": entry["dataset"], "ipc": entry["ipc"], "method": n, "accuracies": v["final_accuracy_per_seed"],
             "accuracy_mean": v["final_accuracy"]} for n, v in entry["strategies"].items() if "final_accuracy_per_seed" in v]
    return verdict_table(rows, best_condensed, BASELINES, "Final accuracy: the best condensed replay against each "
                         "exemplar strategy and generative replay")


def section(entry: dict) -> str:
    """One dataset x budget block of results/continual.md: its command, then its table."""
    return (f"**{entry['dataset']}, 5 experiences, budget {entry['ipc']:g} IPC "
            f"({entry['budget_bytes_fp32']:,} bytes as float32), {entry['config']['epochs']} epochs per "
            f"experience, {entry['seeds']} seeds** — "
            f"`{entry['command']}` ({entry['date']})\n\n{strategies_table(entry)}{verdicts(entry)}\n"
            f"{superseded_table(entry)}")


def table(payload: dict) -> str:
    """results/continual.md (benchmarks/tables.py renders it from the json)."""
    return "\n".join(section(e) for e in payload["results"])


def previous_sections() -> dict:
    """Sections results/continual.json already holds (older files without tables are dropped)."""
    path = RESULTS / "continual.json"
    old = json.loads(path.read_text()).get("results", []) if path.is_file() else []
    return {(e["dataset"], e["ipc"]): e for e in old if "strategies" in e}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--budgets", default=None, help="override the per-dataset IPC budgets, e.g. 10")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--fresh", action="store_true", help="recompute run directories that already hold results")
    ap.add_argument("--run-dir-suffix", default="",
                    help="run in benchmarks/runs/continual-<dataset>-ipc<B><SUFFIX> (a run directory is locked while "
                         "a run uses it): two runs of one section's strategies side by side; the per-seed results go "
                         "to the section's results/continual-seeds/ folder either way, and a later run of all the "
                         "strategies reuses them")
    args = parse(ap)
    sections = previous_sections()
    for name in args.datasets:
        data = load_dataset(name)
        for ipc in [float(b) for b in args.budgets.split(",")] if args.budgets else BUDGETS[short(name)]:
            section = f"continual-{short(name)}-ipc{ipc:g}"
            out = RUNS / (section + args.run_dir_suffix)
            # the published rows condensed their HMN buffers plainly (common.PLAIN, as before multisize
            # became the buffers' default); `edgecond continual` itself now uses the library's defaults
            cfg = ContinualConfig(experiences=5, ipc=ipc, epochs=args.epochs, condense_settings=PLAIN)
            # finished (strategy, seed) results are kept beside the tables: commit them, and a run
            # too long for one machine's session resumes on the next from what was committed
            res = run_continual(data, args.strategies.split(","), cfg, seeds=args.seeds, out=out,
                                reuse=not args.fresh, seed_dir=RESULTS / "continual-seeds" / section)
            plot_seen_accuracy(res, RESULTS / f"continual-{short(name)}-ipc{ipc:g}.png")
            for v in res["strategies"].values():
                v.pop("runs")
            entry = {**res, "dataset": short(name), "ipc": ipc, "command": command(), "date": machine()["date"]}
            entry["superseded"] = superseded(sections.get((short(name), ipc)), entry)
            sections[(short(name), ipc)] = entry
            ordered = [sections[k] for k in sorted(sections)]
            write("continual", {"results": ordered}, table({"results": ordered}))


if __name__ == "__main__":
    main()
