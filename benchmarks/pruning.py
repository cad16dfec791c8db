"""HMN paper Table 6 at our scale: double-end vs easy vs random pruning vs an in-budget HMN.

    python benchmarks/pruning.py --datasets digits --ipcs 5
    python benchmarks/pruning.py                      # digits 5 IPC and cifar10_mini 1 and 10 IPC

One over-budget HMN (+10% instance memories) is condensed per setting and pruned back to the
budget by each method (beta for double-end chosen on the validation split). The in-budget HMN
is the plain quick-preset HMN of benchmarks/condense.py (the same run directory is reused, so
running both costs one in-budget condensation). Test accuracy over --seeds evaluation seeds;
pruning time as a share of the over-budget condensation's matching time. Condensations
checkpoint under benchmarks/runs/ and resume; finished rows are cached in results/pruning.json.
"""

from __future__ import annotations

import copy
import json
import time

from common import RESULTS, fmt, parse, parser, short, write
from condense import RUNS, condense_cli
from edgecond.data import load_dataset
from edgecond.evaluation import eval_config, evaluate_images
from edgecond.io import load_container
from edgecond.matching import hmn_shape, match_config, start_matcher
from edgecond.pruning import prune_config, prune_container

IPCS = {"digits": [5], "cifar10_mini": [1, 10]}
EVAL_KEYS = ("accuracy_mean", "accuracy_std", "accuracies", "val_accuracy_mean", "val_accuracies", "seeds",
             "train_images", "config")
METHODS = ["in-budget (no pruning)", "double-end", "easy", "random"]


def over_budget_hmn(data, ipc, cfg, seed: int = 0, over: float = 0.1):
    """The over-budget HMN, condensed with checkpoints in its own run directory (resumable)."""
    m, _, _ = start_matcher("hmn", data, ipc, cfg, seed=seed, over_budget=over, resume=True,
                            out=RUNS / f"{short(data.name)}-hmn-over{over:g}-ipc{ipc:g}-s{seed}")
    m.run(progress=False)
    return m.container, m.seconds


def condense_row(dataset: str, ipc, seeds: int) -> dict | None:
    """condense.py's evaluation of its plain `hmn` run with these seeds (the same container and protocol)."""
    path = RESULTS / "condense.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    hit = [r for r in rows if (r["dataset"], r["ipc"], r["method"]) == (dataset, ipc, "hmn")
           and r["seeds"] == list(range(seeds))]
    return {k: hit[0][k] for k in EVAL_KEYS} if hit else None


def cached_rows() -> dict:
    path = RESULTS / "pruning.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    return {(r["dataset"], r["ipc"], r["method"]): r for r in rows}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--ipcs", default=None)
    args = parse(ap)
    cfg = eval_config("quick")
    rows = cached_rows()
    for name in args.datasets:
        data = load_dataset(name)
        for ipc in [float(v) for v in args.ipcs.split(",")] if args.ipcs else IPCS[short(name)]:
            ipc = int(ipc) if ipc == int(ipc) else ipc
            todo = [m for m in METHODS if rows.get((short(name), ipc, m), {}).get("seeds") != list(range(args.seeds))]
            if not todo:
                continue
            mcfg = match_config("quick", "hmn", data.image_shape, data.num_classes, ipc)  # as condense.py's plain HMN
            target = hmn_shape(data.image_shape, data.num_classes, ipc, mcfg).instances
            over, cond_s = over_budget_hmn(data, ipc, mcfg)
            # the in-budget HMN is condense.py's own run (maybe still condensing in another process): last
            for method in sorted(todo, key=lambda m: m.startswith("in-budget")):
                if method.startswith("in-budget"):
                    rep = condense_cli(name, "hmn", ipc, seed=0, threads=args.threads)
                    c, _ = load_container(rep["dir"])
                    prep, secs = {}, 0.0
                    ev = condense_row(short(name), ipc, args.seeds)  # that run's evaluation, if condense.py made it
                else:
                    c = copy.deepcopy(over)
                    t = time.time()
                    prep = prune_container(c, target, data, prune_config("quick", method), seed=0)
                    secs = time.time() - t
                    ev = None
                if ev is None:
                    x, y = c.images()
                    ev = evaluate_images(x, y, data, cfg, seeds=args.seeds, progress=False)
                rows[(short(name), ipc, method)] = {
                    "dataset": short(name), "ipc": ipc, "method": method, **ev,
                    "instances_per_class": c.instances_per_class, "over_budget_instances": over.instances_per_class,
                    "stored_floats": c.stored_floats(), "beta": prep.get("beta"),
                    "beta_grid_val_accuracy": prep.get("beta_grid_val_accuracy"),
                    "prune_seconds": round(secs, 1), "over_budget_matching_seconds": round(cond_s, 1),
                    "prune_share": secs / cond_s if prep else 0.0}
                print(short(name), ipc, method, fmt(ev["accuracy_mean"], ev["accuracy_std"]), flush=True)
                write_table(rows, args.seeds)


def share(row: dict) -> str:
    return f"{100 * row['prune_share']:.0f}%" if row["prune_share"] else ""


def write_table(rows: dict, seeds: int) -> None:
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[0] != "digits", k[0], k[1], METHODS.index(k[2])))]
    table = ("| dataset | IPC | method | images/class | beta (val) | test accuracy (%) | pruning time / condensation |\n"
             "|---|---|---|---|---|---|---|\n")
    table += "\n".join(f"| {r['dataset']} | {r['ipc']:g} | {r['method']} | {r['instances_per_class']} | "
                       f"{'' if r['beta'] is None else r['beta']} | {fmt(r['accuracy_mean'], r['accuracy_std'])} | "
                       f"{share(r)} |" for r in ordered)
    write("pruning", {"seeds": seeds, "rows": ordered}, table)


if __name__ == "__main__":
    main()
