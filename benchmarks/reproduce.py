"""Rerun a published row today and say whether it reproduces, seed for seed.

    python benchmarks/reproduce.py --source condense --dataset cifar10_mini --ipc 10 --method pixel --threads 1

Condenses the row's container with the recipe that made it (common.condense_run: same kind,
settings, seed; resumed or reused from benchmarks/runs/), evaluates it with the quick protocol
over the row's seeds at --threads, and compares each seed's accuracy with the one the results
file holds. Rows of results/reproduce.json record what was compared, where (CPU model and the
instruction set torch dispatches on, thread count, versions, commit) and the verdict: the
evaluation is bit-deterministic for a container, seed and thread count on one machine
(tests/test_evaluation.py), but another thread count or another CPU gives other accuracies.
"""

from __future__ import annotations

import json

from common import RESULTS, condense_run, dataset_names, fmt, parser, provenance, write
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
    args = ap.parse_args()
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
