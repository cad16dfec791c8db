"""Real-image baselines: random and herding coresets at several IPCs, and the full train split.

    python benchmarks/baselines.py                      # digits and cifar10_mini, 3 seeds
    python benchmarks/baselines.py --datasets digits --seeds 2

Every number is test accuracy of a ConvNet trained with edgecond's quick evaluation protocol
(1000 SGD steps); mean ± std over evaluation seeds. Writes results/baselines.{json,md}.
"""

from __future__ import annotations

from common import fmt, parse, parser, short, write
from edgecond.condense import condense
from edgecond.data import load_dataset
from edgecond.config import eval_config
from edgecond.evaluation import evaluate_images

IPCS = {"digits": [1, 5, 10], "cifar10_mini": [1, 10, 50]}


def main() -> None:
    ap = parser(__doc__, threads=1)
    args = parse(ap)
    cfg = eval_config("quick")
    rows = []
    for name in args.datasets:
        data = load_dataset(name)
        for ipc in IPCS[short(name)]:
            for kind in ("random", "herding"):
                res = condense(data, kind, ipc, seed=0, progress=False)
                x, y = res.container.images()
                ev = evaluate_images(x, y, data, cfg, seeds=args.seeds, progress=False)
                rows.append({"dataset": short(name), "ipc": ipc, "method": kind, **ev})
                print(rows[-1]["dataset"], ipc, kind, fmt(ev["accuracies"]), flush=True)
                write("baselines", {"seeds": args.seeds, "eval": cfg.__dict__, "rows": rows, "partial": True},
                      table({"rows": rows}) + "\n\n(partial: the run was still going)")
        ev = evaluate_images(data.x_train, data.y_train, data, cfg, seeds=args.seeds, progress=False)
        rows.append({"dataset": short(name), "ipc": "full", "method": "full train split", **ev})
        print(short(name), "full", fmt(ev["accuracies"]), flush=True)

    write("baselines", {"seeds": args.seeds, "eval": cfg.__dict__, "rows": rows}, table({"rows": rows}))


def table(payload: dict) -> str:
    rows = payload["rows"]
    out = "| dataset | IPC | method | test accuracy (%) | seeds |\n|---|---|---|---|---|\n"
    return out + "\n".join(f"| {r['dataset']} | {r['ipc']} | {r['method']} | "
                            f"{fmt(r['accuracies'])} | {len(r['accuracies'])} |" for r in rows)


if __name__ == "__main__":
    main()
