"""HMN paper Table 6 at our scale: double-end vs easy vs random pruning vs an in-budget HMN.

    python benchmarks/pruning.py --datasets digits --ipcs 5
    python benchmarks/pruning.py                      # digits 5 IPC and cifar10_mini 1 and 10 IPC

One over-budget HMN (+10% instance memories) is condensed per setting and pruned back to the
budget by each method (beta for double-end chosen on the validation split), each through
`edgecond condense --set prune.method=METHOD` (see pruned_run). The in-budget HMN
is the plain quick-preset HMN of benchmarks/condense.py (the same run directory is reused, so
running both costs one in-budget condensation). Test accuracy over --seeds evaluation seeds;
pruning time as a share of the over-budget condensation's matching time. Condensations
checkpoint under benchmarks/runs/ and resume; finished rows are cached in results/pruning.json.
"""

from __future__ import annotations

import shutil

from common import RUNS, VARIANTS, cached_rows, condense_run, fmt, parse, parser, short, write
from edgecond.config import eval_config
from edgecond.data import load_dataset
from edgecond.evaluation import evaluate_images
from edgecond.io import load_container

IPCS = {"digits": [5], "cifar10_mini": [1, 10]}
EVAL_KEYS = ("accuracy_mean", "accuracy_std", "accuracies", "val_accuracy_mean", "val_accuracies", "seeds",
             "train_images", "config")
METHODS = ["in-budget (no pruning)", "double-end", "easy", "random"]
for _m in METHODS[1:]:  # the over-budget HMN (+10% instance memories) pruned back by each method
    VARIANTS[f"hmn-prune-{_m}"] = ("hmn", {"prune.method": _m})


def pruned_run(dataset: str, ipc, method: str, threads: int) -> dict:
    """`edgecond condense --set prune.method=METHOD`. The methods share one over-budget matching run:
    the first condenses it; the others start from a copy of its final checkpoint (the same settings
    but for the pruning method), so they differ only in what they prune."""
    run = RUNS / f"{short(dataset)}-hmn-prune-{method}-ipc{ipc:g}-s0"
    done = [RUNS / f"{short(dataset)}-hmn-prune-{m}-ipc{ipc:g}-s0" / "checkpoint.pt" for m in METHODS[1:]]
    done = [c for c in done if c.is_file() and (c.parent / "container.safetensors").is_file()]
    if done and not (run / "checkpoint.pt").is_file():
        run.mkdir(parents=True, exist_ok=True)
        shutil.copy(done[0], run / "checkpoint.pt")
    return condense_run(dataset, f"hmn-prune-{method}", ipc, 0, threads)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--ipcs", default=None)
    args = parse(ap)
    cfg = eval_config("quick")
    rows = cached_rows("pruning", "dataset", "ipc", "method")
    for name in args.datasets:
        data = load_dataset(name)
        for ipc in [float(v) for v in args.ipcs.split(",")] if args.ipcs else IPCS[short(name)]:
            ipc = int(ipc) if ipc == int(ipc) else ipc
            for method in METHODS:
                if rows.get((short(name), ipc, method), {}).get("seeds") == list(range(args.seeds)):
                    continue
                in_budget = method.startswith("in-budget")
                # the in-budget HMN is benchmarks/condense.py's plain run (and its evaluation, if it made one)
                rep = (condense_run(name, "hmn", ipc, 0, args.threads) if in_budget
                       else pruned_run(name, ipc, method, args.threads))
                ev = cached_rows("condense", "dataset", "ipc", "method").get((short(name), ipc, "hmn")) \
                    if in_budget else None
                if ev is None or ev["seeds"] != list(range(args.seeds)):
                    x, y = load_container(rep["dir"])[0].images()
                    ev = evaluate_images(x, y, data, cfg, seeds=args.seeds, progress=False)
                prep = rep.get("pruning", {})
                secs, cond_s = prep.get("seconds", 0.0), rep.get("matching_seconds", 0.0)
                rows[(short(name), ipc, method)] = {
                    "dataset": short(name), "ipc": ipc, "method": method, **{k: ev[k] for k in EVAL_KEYS},
                    "instances_per_class": rep["instances_per_class"],
                    "over_budget_instances": prep.get("instances_before"),
                    "stored_floats": rep["stored_floats"], "beta": prep.get("beta"),
                    "beta_grid_val_accuracy": prep.get("beta_grid_val_accuracy"),
                    "prune_seconds": round(secs, 1), "over_budget_matching_seconds": round(cond_s, 1),
                    "prune_share": secs / cond_s if prep and cond_s else 0.0}
                print(short(name), ipc, method, fmt(ev["accuracies"]), flush=True)
                write_table(rows, args.seeds)


def share(row: dict) -> str:
    return f"{100 * row['prune_share']:.0f}%" if row["prune_share"] else ""


def write_table(rows: dict, seeds: int) -> None:
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[0] != "digits", k[0], k[1], METHODS.index(k[2])))]
    payload = {"seeds": seeds, "rows": ordered}
    write("pruning", payload, table(payload))


def table(payload: dict) -> str:
    out = ("| dataset | IPC | method | images/class | beta (val) | test accuracy (%) | pruning time / condensation |\n"
           "|---|---|---|---|---|---|---|\n")
    return out + "\n".join(f"| {r['dataset']} | {r['ipc']:g} | {r['method']} | {r['instances_per_class']} | "
                            f"{'' if r['beta'] is None else r['beta']} | {fmt(r['accuracies'])} | "
                            f"{share(r)} |" for r in payload["rows"])


if __name__ == "__main__":
    main()
