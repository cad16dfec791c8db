"""MDC's Table 1 at our scale: accuracy of every prefix subset, with and without multisize.

    python benchmarks/multisize.py --datasets digits
    python benchmarks/multisize.py          # digits 5 IPC; cifar10_mini pixel 10 IPC, hmn 1 IPC

For each container kind and budget:
  Baseline C  one plain condensation (benchmarks/condense.py's run), prefixes S_[k] as they come;
  MDC (ours)  one condensation with MDC's adaptive subset loss (`--set match.multisize=true`); for hmn the
              subset loss trains only the subset's instance memories;
  MDC, shared tiers  (hmn only) the same, but the subset loss also trains the shared tiers
              (`--set match.subset_shared=true`: decoder, dataset and class memories);
  Baseline A  (pixel only) a separate plain condensation at each size k.
  ..., herding order  the same container, its instances re-ordered after condensation
              (edgecond.multisize.herding_prefix_order: MDC's trained prefix first, the rest
              by herding toward the real class mean); only the order changes, so the full-size
              entry and prefixes within the trained prefix are the un-ordered row's (the same images).
Also, as condensed (AS_CONDENSED, cifar10_mini): the default `edgecond condense --budget 122880`
int8 HMN (its 64 instances fitted in herding order), 8-bit herding images at its bytes (4 a class),
and the 64 real herding images a class it is fitted to (float32, 64 IPC: a reference, not a budget's).
    python benchmarks/multisize.py --datasets cifar10_mini --kinds hmn-int8-cli,herding-u8,herding --methods 'Baseline C'
Each prefix S_[k] (the first k instances of every class) is trained on alone with the quick
evaluation protocol over --seeds seeds, at sizes 1, N/4, N/2 and N (N instances per class;
MDC's Baseline A needs at least these). On cifar10_mini the hmn budget is 1 IPC (85
instances per class) rather than 10 so that one CPU session can afford it; pixel uses 10 IPC
(at 1 IPC it has a single instance and no subsets). Rows are cached in
results/multisize.json; writes results/multisize.md and results/multisize-<dataset>.png.
"""

from __future__ import annotations


import numpy as np

from common import RESULTS, cached_rows, condense_run, fmt, parse, parser, short, write
from edgecond.config import eval_config
from edgecond.data import load_dataset
from edgecond.evaluation import evaluate_images, evaluate_subsets
from edgecond.io import load_container
from edgecond.multisize import herding_prefix_order, trained_prefix
from edgecond.plots import line_plot

IPCS = {"digits": {"pixel": 5, "hmn": 5}, "cifar10_mini": {"pixel": 10, "hmn": 1}}
# containers measured as they come (Baseline C only): the int8 HMN `edgecond condense` makes by
# default at 1 IPC (its herding schedule fits instances in herding order instead of running MDC's
# subset loss), the 8-bit herding coreset at its bytes, and the real herding images it is fitted to
AS_CONDENSED = {"cifar10_mini": {"hmn-int8-cli": 1, "herding-u8": 1, "herding": 64}}
SHARED = "MDC, shared tiers"  # hmn only: the subset loss also trains decoder, dataset and class memories
ORDERED = ", herding order"
METHODS = ["Baseline A", "Baseline C", SHARED, "MDC (ours)", "Baseline C" + ORDERED, "MDC (ours)" + ORDERED]


def quarters(n: int) -> list[int]:
    return sorted({1, max(1, n // 4), max(1, n // 2), n})


def measure_ordered(name, data, kind, method, ipc, cfg, seeds, threads, rows) -> dict:
    """Prefix accuracies of `method`'s container after herding_prefix_order (sizes below full)."""
    base = method[:-len(ORDERED)]
    rep = condense_run(name, kind, ipc, 0, threads, multisize=base != "Baseline C")
    cont, _ = load_container(rep["dir"])
    ms = rep.get("multisize")
    protect = trained_prefix(ms["frozen"], ms["final_mls"]) if ms else 0
    cont.select_instances(herding_prefix_order(cont, data, protect=protect, seed=0))
    n, same = cont.instances_per_class, rows[(short(name), kind, base)]["subsets"]
    # prefixes up to the protected size, and the full set, hold the same images as before: reuse them
    sub = evaluate_subsets(cont, data, cfg, [k for k in quarters(n) if protect < k < n], seeds=seeds, progress=False)
    sub.update({str(k): same[str(k)] for k in quarters(n) if k <= protect or k == n})
    return dict(sorted(sub.items(), key=lambda kv: int(kv[0])))


def measure(name, data, kind, method, ipc, cfg, seeds, threads) -> dict:
    if method == "Baseline A":  # one plain condensation per size; sizes of the plain container
        n = load_container(condense_run(name, kind, ipc, 0, threads)["dir"])[0].instances_per_class
        sub = {}
        for k in quarters(n):
            x, y = load_container(condense_run(name, kind, k, 0, threads)["dir"])[0].images()
            r = evaluate_images(x, y, data, cfg, seeds=seeds, progress=False)
            sub[str(k)] = {"mean": r["accuracy_mean"], "std": r["accuracy_std"], "accuracies": r["accuracies"]}
        return sub
    variant = f"{kind}-shared" if method == SHARED else kind
    cont, _ = load_container(condense_run(name, variant, ipc, 0, threads, multisize=method != "Baseline C")["dir"])
    return evaluate_subsets(cont, data, cfg, quarters(cont.instances_per_class), seeds=seeds, progress=False)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--kinds", default="pixel,hmn",
                    help="pixel,hmn: MDC's comparison; on cifar10_mini also hmn-int8-cli, herding-u8 and herding "
                         "(AS_CONDENSED: measured as they come)")
    ap.add_argument("--methods", default=";".join(METHODS),
                    help="';'-separated subset of the methods, e.g. 'Baseline C, herding order;MDC (ours)'")
    ap.add_argument("--fresh", action="store_true", help="re-measure the selected rows even if cached")
    args = parse(ap)
    unknown = set(args.methods.split(";")) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    cfg = eval_config("quick")
    rows = cached_rows("multisize", "dataset", "kind", "method")
    mine: dict = {}  # rows measured by this process; the file keeps rows other processes finished meanwhile
    for name in args.datasets:
        data = load_dataset(name)
        for kind in args.kinds.split(","):
            as_condensed = AS_CONDENSED.get(short(name), {})
            ipc = as_condensed[kind] if kind in as_condensed else IPCS[short(name)][kind]
            for method in [m for m in METHODS if m in args.methods.split(";")]:
                key = (short(name), kind, method)
                if ((method == "Baseline A" and kind != "pixel") or (method == SHARED and kind != "hmn")
                        or (kind in as_condensed and method != "Baseline C")
                        or (not args.fresh and rows.get(key, {}).get("seeds") == args.seeds)):
                    continue
                if method.endswith(ORDERED):
                    if (key[0], kind, method[:-len(ORDERED)]) not in rows:
                        continue  # needs the un-ordered row first
                    sub = measure_ordered(name, data, kind, method, ipc, cfg, args.seeds, args.threads, rows)
                else:
                    sub = measure(name, data, kind, method, ipc, cfg, args.seeds, args.threads)
                full = sub[max(sub, key=int)]
                rows[key] = {"dataset": key[0], "kind": kind, "method": method, "ipc": ipc, "seeds": args.seeds,
                             "subsets": sub, "average": float(np.mean([v["mean"] for v in sub.values()])),
                             "first": sub["1"]["mean"], "first_std": sub["1"]["std"],
                             "full": full["mean"], "full_std": full["std"]}
                mine[key] = rows[key]
                print(*key, f"avg {100 * rows[key]['average']:.1f}", flush=True)
                rows = {**cached_rows("multisize", "dataset", "kind", "method"), **mine}
                write_outputs(rows)


def write_outputs(rows: dict) -> None:
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[0] != "digits", k[0], k[1], METHODS.index(k[2])))]
    for ds in sorted({r["dataset"] for r in ordered}):
        line_plot({f"{r['kind']} {r['ipc']} IPC {r['method']}":
                   ([int(k) for k in r["subsets"]], [v["mean"] for v in r["subsets"].values()],
                    [v["std"] for v in r["subsets"].values()]) for r in ordered if r["dataset"] == ds},
                  RESULTS / f"multisize-{ds}.png", xlabel="images per class (prefix size)",
                  ylabel="test accuracy", title=f"{ds}: accuracy of each prefix subset", logx=True)
    write("multisize", {"rows": ordered}, table({"rows": ordered}))


def table(payload: dict) -> str:
    """results/multisize.md (benchmarks/tables.py renders it from the json)."""
    out = ("| dataset | container | budget (IPC) | method | sizes | S_[1] (%) | average over sizes (%) | "
           "full size (%) |\n|---|---|---|---|---|---|---|---|\n")
    return out + "\n".join(
        f"| {r['dataset']} | {r['kind']} | {r['ipc']} | {r['method']} | {','.join(r['subsets'])} | "
        f"{fmt(r['subsets']['1']['accuracies'])} | {100 * r['average']:.1f} | "
        f"{fmt(r['subsets'][max(r['subsets'], key=int)]['accuracies'])} |" for r in payload["rows"])


if __name__ == "__main__":
    main()
