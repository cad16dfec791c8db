"""What limits an HMN at a large budget: how well its decoder can reproduce real images.

    python benchmarks/capacity.py                                # cifar10_mini 10 IPC
    python benchmarks/capacity.py --datasets digits --ipcs 5 --configs real,default:1000

No gradient matching here. Each `WIDTHS:STEPS` config is an HMN of the quick preset's shape
(instances capped at the 128-image matching batch) whose decoder has hidden widths WIDTHS
(`default`: the budget solver's tiers, e.g. 10x6 for CIFAR-sized images -- what the quick
preset used before it spent the capped surplus on the decoder (budget.py); digits' has one),
fitted by the warm start alone (edgecond/warmstart.py, STEPS Adam steps) to the real images
it is assigned, then evaluated like any container. `real` evaluates those target images
themselves: what a perfect decoder would reproduce at the same number of images. Every HMN
config fits the same float budget; a wider decoder is paid for with narrower instance memories.

Reading it: the gap between `real` and the default decoder (default:1000) is what reconstruction
loses before any matching. If wider decoders close it at equal budget, the quick preset's HMN
is limited by decoder capacity; if more steps close it, by the warm start's length; if
neither, by what matching must add. Rows are cached in results/capacity.json.
"""

from __future__ import annotations

import json
import time

import torch

from common import cached_rows, fmt, fmt_population, parse, parser, short, write
from edgecond.budget import solve_hmn
from edgecond.containers.hmn import HMN
from edgecond.data import load_dataset
from edgecond.condense import settings_for
from edgecond.config import eval_config
from edgecond.evaluation import evaluate_images
from edgecond.warmstart import warm_start, warm_start_targets

IPCS = {"digits": [5], "cifar10_mini": [10]}
CONFIGS = "real,default:1000,default:4000,32x16:4000,64x32:4000"


def hmn_for(data, ipc: float, widths: tuple[int, ...] | None, seed: int = 0) -> HMN:
    """The quick preset's HMN shape for `data` at `ipc`, with decoder widths `widths` (None: the solver's)."""
    cap = settings_for(data, "hmn", ipc).container.max_instances
    shape = solve_hmn(data.image_shape, data.num_classes, ipc, max_instances=cap, hidden=widths)
    hmn = HMN(**shape.hmn_kwargs())
    hmn.init_memories(torch.Generator().manual_seed(seed))
    return hmn


def run_config(data, ipc: float, config: str, seeds: int) -> dict:
    cap = settings_for(data, "hmn", ipc).container.max_instances
    row: dict = {"dataset": short(data.name), "ipc": ipc, "config": config}
    if config == "real":
        n = solve_hmn(data.image_shape, data.num_classes, ipc, max_instances=cap).instances
        x = warm_start_targets(data, n).flatten(0, 1)
        y = torch.arange(data.num_classes).repeat_interleave(n)
        row.update(images_per_class=n, stored_floats=None, mse=0.0, fit_seconds=0.0)
    else:
        widths, steps = config.split(":")
        hmn = hmn_for(data, ipc, None if widths == "default" else tuple(int(w) for w in widths.split("x")))
        fit = warm_start(hmn, data, int(steps))
        with torch.no_grad():
            x, y = hmn.images()
        row.update(images_per_class=hmn.instances_per_class, instance_channels=hmn.instance_channels,
                   stored_floats=hmn.stored_floats(), decoder_floats=hmn.parts()["decoder"],
                   mse=fit["mse_last"], fit_seconds=fit["seconds"])
    t0 = time.time()
    res = evaluate_images(x, y, data, eval_config("quick"), seeds=seeds, progress=False)
    row.update(accuracy_mean=res["accuracy_mean"], accuracy_std=res["accuracy_std"], accuracies=res["accuracies"],
               seeds=res["seeds"],
               budget_floats=int(ipc * data.num_classes * torch.Size(data.image_shape).numel()),
               eval_seconds=round(time.time() - t0, 1))
    return row


def accuracy(r: dict) -> str:
    if "accuracies" in r:
        return fmt(r["accuracies"])
    return fmt_population(r["accuracy_mean"], r["accuracy_std"], len(r["seeds"]))  # rows before 2026-12-06


def table(payload: dict) -> str:
    rows = payload["rows"]
    lines = ["| dataset | IPC | config (decoder widths : warm-start steps) | images/class | instance channels "
             "| decoder / stored floats | reconstruction MSE | test accuracy (%) | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        floats = "real images" if r["stored_floats"] is None else f"{r['decoder_floats']:,} / {r['stored_floats']:,}"
        lines.append(f"| {r['dataset']} | {r['ipc']:g} | {r['config']} | {r['images_per_class']} "
                     f"| {r.get('instance_channels', '')} | {floats} | {r['mse']:.3f} "
                     f"| {accuracy(r)} | {len(r['seeds'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = parser(__doc__, seeds=2)
    ap.add_argument("--ipcs", default=None)
    ap.add_argument("--configs", default=CONFIGS, help="comma-separated: real or WIDTHS:STEPS, e.g. 32x16:4000")
    args = parse(ap)
    rows = cached_rows("capacity", "dataset", "ipc", "config")
    for name in args.datasets:
        data = load_dataset(name)
        for ipc in [float(v) for v in args.ipcs.split(",")] if args.ipcs else IPCS[short(name)]:
            for config in args.configs.split(","):
                key = (short(name), ipc, config)
                if rows.get(key, {}).get("seeds") == list(range(args.seeds)):
                    continue
                print(f"{key} ...", flush=True)
                rows[key] = run_config(data, ipc, config, args.seeds)
                print(json.dumps(rows[key]), flush=True)
                ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1]))]
                write("capacity", {"rows": ordered}, table({"rows": ordered}))


if __name__ == "__main__":
    main()
