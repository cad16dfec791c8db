"""Containers at equal budget: random, herding, pixel, idc, haba and hmn, condensed with the quick preset.

    python benchmarks/condense.py                                   # digits 2/5 IPC, cifar10_mini 1/10 IPC
    python benchmarks/condense.py --datasets digits --kinds random,hmn --seeds 2

Containers are condensed plainly (no multisize loss, no pruning: every container under the
same gradient-matching loss, as the HMN paper's Table 3); `haba-contrast` is haba with HaBa's
adversarial contrastive term (--haba-contrast 0.1); `hmn-icN` is an HMN with N-channel instance
memories (fewer, larger instances than the solver's default); `hmn-cold` is an HMN with the HMN
paper's random initialisation and Table 7 shapes (--warm-start 0 --max-instances 0) instead of the
quick preset's warm start and instance cap. benchmarks/pruning.py and
benchmarks/multisize.py measure pruning and multisize. Each container is made by the
`edgecond condense` CLI in its own process (so its wall time and peak RSS are its own) under benchmarks/runs/, then evaluated here with the quick
evaluation protocol over --seeds seeds. Finished rows are cached in
results/condense.json and skipped on a rerun (--fresh to redo them); an interrupted
condensation resumes from its checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common import RESULTS, fmt, parse, parser, short, write
from edgecond.data import load_dataset
from edgecond.evaluation import eval_config, evaluate_images
from edgecond.io import load_container

IPCS = {"digits": [2, 5], "cifar10_mini": [1, 10]}
RUNS = Path(__file__).resolve().parent / "runs"
CORESETS = ("random", "herding")


def condense_cli(dataset: str, kind: str, ipc: float, seed: int, threads: int, multisize: bool = False) -> dict:
    """Condense (or reuse) benchmarks/runs/<dataset>-<kind>[-ms]-ipc<ipc>-s<seed> with the CLI.

    Plain by default (no multisize loss, no pruning: every container under the same loss,
    as the HMN paper's Table 3); multisize=True adds MDC's subset loss (benchmarks/multisize.py).
    """
    out = RUNS / f"{short(dataset)}-{kind}{'-ms' if multisize else ''}-ipc{ipc:g}-s{seed}"
    if not (out / "container.safetensors").is_file():
        container, *variants = kind.split("-")  # haba-contrast -> haba, hmn-ic13-cold -> hmn
        cmd = [sys.executable, "-m", "edgecond.cli", "condense", "--dataset", dataset, "--container", container,
               "--ipc", f"{ipc:g}", "--seed", str(seed), "--out", str(out), "--threads", str(threads), "--resume"]
        if kind not in CORESETS:
            cmd += ["--multisize" if multisize else "--no-multisize", "--prune", "none", "--prefix-order", "none"]
        for v in variants:
            if v == "contrast":
                cmd += ["--haba-contrast", "0.1"]  # HaBa's lambda_cos
            elif v.startswith("ic"):  # instance-memory channels other than the solver's default
                cmd += ["--instance-channels", v[2:]]
            elif v == "shared":  # with multisize: the subset loss also trains the HMN's shared tiers
                cmd += ["--subset-shared"]
            elif v.startswith("dec"):  # decoder widths: dec64x32, decsurplus
                cmd += ["--decoder-widths", v[3:]]
            elif v.startswith("dlr"):  # the decoder's matching rate as a multiple of the memories': dlr0
                cmd += ["--decoder-lr", v[3:]]
            elif v.startswith("ws"):  # warm-start steps other than the preset's: ws4000
                cmd += ["--warm-start", v[2:]]
            elif v == "cold":
                cmd += ["--warm-start", "0", "--max-instances", "0"]  # the paper's initialisation and shapes
            else:
                raise ValueError(f"unknown variant {v!r} in kind {kind!r}")
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return {"dir": str(out), **json.loads((out / "report.json").read_text())}


def load_cache(path: Path) -> dict:
    if not path.is_file():
        return {}
    return {(r["dataset"], r["ipc"], r["method"]): r for r in json.loads(path.read_text())["rows"]}


KINDS = ["random", "herding", "pixel", "idc", "haba", "haba-contrast", "hmn-cold", "hmn-dectiers", "hmn"]


def order(key):
    dataset, ipc, kind = key
    return (dataset != "digits", dataset, ipc, KINDS.index(kind) if kind in KINDS else 99, kind)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--ipcs", default=None, help="override the per-dataset IPCs, e.g. 5")
    ap.add_argument("--fresh", action="store_true", help="ignore cached rows")
    args = parse(ap)
    cache_file = RESULTS / "condense.json"
    cached = {} if args.fresh else load_cache(cache_file)
    cfg = eval_config("quick")
    mine: dict = {}  # (dataset, ipc, method) -> row measured by this process; the file keeps all others
    for name in args.datasets:
        data = load_dataset(name)
        ipcs = [int(v) for v in args.ipcs.split(",")] if args.ipcs else IPCS[short(name)]
        for ipc in ipcs:
            for kind in args.kinds.split(","):
                key = (short(name), ipc, kind)
                if key in cached and cached[key]["seeds"] == list(range(args.seeds)):
                    continue
                rep = condense_cli(name, kind, ipc, seed=0, threads=args.threads)
                cont, _ = load_container(rep["dir"])
                x, y = cont.images()
                ev = evaluate_images(x, y, data, cfg, seeds=args.seeds, progress=False)
                mine[key] = ({"dataset": key[0], "ipc": ipc, "method": kind, **ev,
                             "images_per_class": rep["instances_per_class"], "stored_floats": rep["stored_floats"],
                             "budget_floats": rep["budget_floats"], "condense_seconds": rep["condense_seconds"],
                             "peak_rss_mb": rep["peak_rss_mb"]})
                results = {**load_cache(cache_file), **mine}  # with rows other processes finished meanwhile
                rows = [results[k] for k in sorted(results, key=order)]
                print(*key, fmt(ev["accuracy_mean"], ev["accuracy_std"]), f"{rep['condense_seconds']:.0f}s", flush=True)
                write("condense", {"seeds": args.seeds, "eval": cfg.__dict__, "rows": rows}, "(partial)")

    results = {**load_cache(cache_file), **mine}
    rows = [results[k] for k in sorted(results, key=order)]
    table = ("| dataset | IPC | container | images/class | stored / budget floats | test accuracy (%) | seeds | "
             "condense time (s) | peak RSS (MB) |\n|---|---|---|---|---|---|---|---|---|\n")
    table += "\n".join(
        f"| {r['dataset']} | {r['ipc']} | {r['method']} | {r['images_per_class']} | "
        f"{r['stored_floats']:,} / {r['budget_floats']:,} | {fmt(r['accuracy_mean'], r['accuracy_std'])} | "
        f"{len(r['seeds'])} | "
        f"{r['condense_seconds']:.0f} | {r['peak_rss_mb']:.0f} |" for r in rows)
    write("condense", {"seeds": args.seeds, "eval": cfg.__dict__, "rows": rows}, table)


if __name__ == "__main__":
    main()
