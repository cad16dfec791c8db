"""HMN paper Table 6 at our scale: double-end vs easy vs random pruning vs an in-budget HMN.

    python benchmarks/pruning.py --datasets digits --ipcs 5
    python benchmarks/pruning.py                      # digits 5 IPC and cifar10_mini 1 and 10 IPC

One over-budget HMN (+10% instance memories) is condensed per setting and pruned back to the
budget by each method (beta for double-end chosen on the validation split); the in-budget
HMN is condensed separately. Quick presets throughout; test accuracy over --seeds
evaluation seeds; pruning time as a share of condensation time. Writes results/pruning.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from common import dataset_names, fmt, short, write
from edgecond.budget import solve_hmn
from edgecond.data import load_dataset
from edgecond.evaluation import eval_config, evaluate_images
from edgecond.matching import Matcher, init_container, match_config
from edgecond.pruning import prune_config, prune_container

IPCS = {"digits": [5], "cifar10_mini": [1, 10]}


def condensed_hmn(data, ipc, over_budget, seed):
    cont = init_container("hmn", data, ipc, seed, over_budget=over_budget)
    t = time.time()
    Matcher(cont, data, match_config("quick", "hmn", data.image_shape), seed=seed).run(progress=False)
    return cont, time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,cifar10_mini")
    ap.add_argument("--ipcs", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = eval_config("quick")
    rows = []
    for name in dataset_names(args.datasets.split(",")):
        data = load_dataset(name)
        for ipc in [float(v) for v in args.ipcs.split(",")] if args.ipcs else IPCS[short(name)]:
            target = solve_hmn(data.image_shape, data.num_classes, ipc).instances
            over, cond_s = condensed_hmn(data, ipc, 0.1, seed=0)
            inb, inb_s = condensed_hmn(data, ipc, 0.0, seed=0)
            variants = {"in-budget (no pruning)": (inb, {}, inb_s)}
            for method in ("double-end", "easy", "random"):
                c = copy.deepcopy(over)
                t = time.time()
                rep = prune_container(c, target, data, prune_config("quick", method), seed=0)
                variants[method] = (c, rep, time.time() - t)
            for method, (c, rep, secs) in variants.items():
                x, y = c.images()
                ev = evaluate_images(x, y, data, cfg, seeds=args.seeds, progress=False)
                rows.append({"dataset": short(name), "ipc": ipc, "method": method, **ev,
                             "instances_per_class": c.instances_per_class, "stored_floats": c.stored_floats(),
                             "beta": rep.get("beta"), "beta_grid_val_accuracy": rep.get("beta_grid_val_accuracy"),
                             "prune_seconds": secs if rep else 0.0, "condense_seconds": cond_s,
                             "prune_share": (secs / cond_s) if rep else 0.0})
                print(short(name), ipc, method, fmt(ev["accuracy_mean"], ev["accuracy_std"]), flush=True)
    table = ("| dataset | IPC | method | images/class | beta (val) | test accuracy (%) | pruning time / condensation |\n"
             "|---|---|---|---|---|---|---|\n")
    table += "\n".join(f"| {r['dataset']} | {r['ipc']:g} | {r['method']} | {r['instances_per_class']} | "
                       f"{'' if r['beta'] is None else r['beta']} | {fmt(r['accuracy_mean'], r['accuracy_std'])} | "
                       f"{100 * r['prune_share']:.0f}% |" for r in rows)
    write("pruning", {"seeds": args.seeds, "rows": rows}, table)


if __name__ == "__main__":
    main()
