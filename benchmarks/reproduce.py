"""Rerun a published row today and say whether it reproduces, seed for seed.

    python benchmarks/reproduce.py --source condense --dataset cifar10_mini --ipc 10 --method pixel --threads 1

Condenses the row's container with the recipe that made it (common.condense_run: same kind,
settings, seed; resumed or reused from benchmarks/runs/), evaluates it with the quick protocol
over the row's seeds at --threads, and compares each seed's accuracy with the one the results
file holds. Rows of results/reproduce.json record what was compared, where (CPU model and the
instruction set torch dispatches on, thread count, versions, commit) and the verdict: the
evaluation is bit-deterministic for a container, seed and thread count on one machine
(tests/test_evaluation.py), but another thread count or another CPU gives other accuracies.

    python benchmarks/reproduce.py --adopt "REASON" --source condense --dataset cifar10_mini --ipc 10 --method hmn

Where a rerun differs for a known reason (another CPU), --adopt makes the results file's row
hold what today's rerun gave (its values and provenance, from results/reproduce.json: nothing is
rerun), and keeps the values it replaces under the row's `superseded`, dated, with the reason;
tables.py prints them beside the README's headline table. Then run `python benchmarks/tables.py`.
"""

from __future__ import annotations

import json

from common import RESULTS, condense_run, dataset_names, fmt, parser, provenance, write
from edgecond.io import atomic_write_text
from edgecond.config import eval_config
from edgecond.data import load_dataset
from edgecond.evaluation import evaluate_images
from edgecond.io import load_container


def main() -> None:
    ap = parser(__doc__, threads=1)
    ap.add_argument("--source", required=True, help="the results file holding the row, e.g. condense")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--ipc", type=int, required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--adopt", metavar="REASON", default=None,
                    help="make the row hold its stored rerun's values (no rerun), keeping the old ones with REASON")
    args = ap.parse_args()
    if args.adopt:
        return adopt(args.source, (args.dataset, args.ipc, args.method), args.adopt)
    import torch

    torch.set_num_threads(args.threads)
    row = next(r for r in json.loads((RESULTS / f"{args.source}.json").read_text())["rows"]
               if (r["dataset"], r["ipc"], r["method"]) == (args.dataset, args.ipc, args.method))
    name = dataset_names([args.dataset])[0]
    rep = condense_run(name, args.method, args.ipc, seed=0, threads=args.threads)
    cont, _ = load_container(rep["dir"])
    x, y = cont.images()
    ev = evaluate_images(x, y, load_dataset(name), eval_config("quick"), seeds=len(row["seeds"]), progress=False)
    same = ev["accuracies"] == row["accuracies"]
    out = {"source": args.source, "dataset": args.dataset, "ipc": args.ipc, "method": args.method,
           "published": row["accuracies"], "today": ev["accuracies"], "identical": same,
           "published_mean_std": [row["accuracy_mean"], row["accuracy_std"]],
           "today_mean_std": [ev["accuracy_mean"], ev["accuracy_std"]],
           "provenance": provenance(ev, args.threads)}
    path = RESULTS / "reproduce.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    rows = [r for r in rows if (r["source"], r["dataset"], r["ipc"], r["method"]) != (args.source, args.dataset,
                                                                                        args.ipc, args.method)]
    rows.append(out)
    write("reproduce", {"rows": rows}, table({"rows": rows}))


def adopt(source: str, key: tuple, reason: str) -> None:
    """The `source` row `key` takes its latest rerun's values; the replaced ones go, dated and
    with `reason`, to the row's `superseded` list."""
    reruns = json.loads((RESULTS / "reproduce.json").read_text())["rows"]
    rerun = next((r for r in reruns if (r["source"], r["dataset"], r["ipc"], r["method"]) == (source, *key)), None)
    if rerun is None:
        raise SystemExit(f"no rerun of {source} {key} in results/reproduce.json: run it first")
    path = RESULTS / f"{source}.json"
    payload = json.loads(path.read_text())
    row = next(r for r in payload["rows"] if (r["dataset"], r["ipc"], r["method"]) == key)
    if row["accuracies"] == rerun["today"]:
        print("the row already holds the rerun's values")
        return
    old = {k: row[k] for k in ("accuracies", "accuracy_mean", "accuracy_std", "provenance")}
    row["superseded"] = row.get("superseded", []) + [{**old, "until": rerun["provenance"]["date"][:10],
                                                       "reason": reason}]
    row.update(accuracies=rerun["today"], accuracy_mean=rerun["today_mean_std"][0],
               accuracy_std=rerun["today_mean_std"][1], provenance=rerun["provenance"])
    atomic_write_text(path, json.dumps(payload, indent=2))
    print(f"{path.name}: {key} now {fmt(rerun['today'])} (was {fmt(old['accuracies'])}); "
          "run python benchmarks/tables.py")


def table(payload: dict) -> str:
    """results/reproduce.md (benchmarks/tables.py renders it from the json)."""
    out = ("| source | dataset | IPC | method | published (per seed) | today (per seed) | today | identical | "
           "machine, threads |\n|---|---|---|---|---|---|---|---|---|\n")
    return out + "\n".join(
        f"| {r['source']} | {r['dataset']} | {r['ipc']} | {r['method']} | {', '.join(f'{a:.4f}' for a in r['published'])} "
        f"| {', '.join(f'{a:.4f}' for a in r['today'])} | {fmt(r['today'])} | "
        f"{'yes' if r['identical'] else 'no'} | {r['provenance']['machine']}, {r['provenance']['threads']} |"
        for r in payload["rows"])


if __name__ == "__main__":
    main()
