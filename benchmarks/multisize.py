"""MDC's Table 1 at our scale: accuracy of every prefix subset, with and without multisize.

    python benchmarks/multisize.py --datasets digits
    python benchmarks/multisize.py                    # digits 5 IPC and cifar10_mini 10 IPC

For pixel and hmn: Baseline C (one plain condensation, prefixes taken as they come) and
ours (one condensation with MDC's adaptive subset loss); for pixel also Baseline A (a
separate condensation per size). Each prefix size S_[k] is trained on alone (quick
evaluation, --seeds seeds). Reports the average over sizes and the full size, writes
results/multisize.{json,md} and results/multisize-<dataset>.png.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from common import RESULTS, dataset_names, fmt, short, write
from edgecond.data import load_dataset
from edgecond.evaluation import eval_config, evaluate_images, evaluate_subsets, subset_sizes
from edgecond.matching import Matcher, init_container, match_config
from edgecond.plots import line_plot

IPCS = {"digits": 5, "cifar10_mini": 10}


def condensed(kind, data, ipc, multisize, seed=0):
    cont = init_container(kind, data, ipc, seed)
    Matcher(cont, data, match_config("quick", kind, data.image_shape, multisize=multisize), seed=seed).run(progress=False)
    return cont


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,cifar10_mini")
    ap.add_argument("--kinds", default="pixel,hmn")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = eval_config("quick")
    rows = []
    for name in dataset_names(args.datasets.split(",")):
        data = load_dataset(name)
        ipc = IPCS[short(name)]
        curves = {}
        for kind in args.kinds.split(","):
            for label, ms in (("Baseline C", False), ("MDC (ours)", True)):
                cont = condensed(kind, data, ipc, ms)
                sizes = subset_sizes("all", cont.instances_per_class)
                sub = evaluate_subsets(cont, data, cfg, sizes, seeds=args.seeds, progress=False)
                curves[f"{kind} {label}"] = sub
            if kind == "pixel":  # Baseline A: a separate condensation per size
                sub = {}
                for k in subset_sizes("all", ipc):
                    x, y = condensed("pixel", data, k, False).images()
                    r = evaluate_images(x, y, data, cfg, seeds=args.seeds, progress=False)
                    sub[str(k)] = {"mean": r["accuracy_mean"], "std": r["accuracy_std"], "accuracies": r["accuracies"]}
                curves["pixel Baseline A"] = sub
        for method, sub in curves.items():
            means = [v["mean"] for v in sub.values()]
            full = sub[max(sub, key=int)]
            rows.append({"dataset": short(name), "ipc": ipc, "method": method, "subsets": sub,
                         "average": float(np.mean(means)), "first": sub["1"]["mean"], "full": full["mean"],
                         "full_std": full["std"]})
            print(short(name), method, f"avg {100 * np.mean(means):.1f}", flush=True)
        line_plot({m: ([int(k) for k in s], [v["mean"] for v in s.values()], [v["std"] for v in s.values()])
                   for m, s in curves.items()}, RESULTS / f"multisize-{short(name)}.png",
                  xlabel="images per class (prefix size)", ylabel="test accuracy",
                  title=f"{short(name)}, {ipc} IPC budget: accuracy of each prefix subset")
    table = ("| dataset | IPC | method | S_[1] (%) | average over sizes (%) | full size (%) |\n"
             "|---|---|---|---|---|---|\n")
    table += "\n".join(f"| {r['dataset']} | {r['ipc']} | {r['method']} | {100 * r['first']:.1f} | "
                       f"{100 * r['average']:.1f} | {fmt(r['full'], r['full_std'])} |" for r in rows)
    write("multisize", {"seeds": args.seeds, "rows": rows}, table)


if __name__ == "__main__":
    main()
