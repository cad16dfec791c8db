"""Scale-out of condensation on torch.distributed (gloo on CPU).

    python benchmarks/scale.py                        # cifar10_mini, HMN 1 IPC, a short schedule
    python benchmarks/scale.py --outer 2 --inner 5

1. the same summed-mode condensation on 1 and on 2 CPU ranks (torchrun --standalone): wall
   time, matching time and peak RSS per rank;
2. one process, condensation time as the number of classes grows (2, 5, 10).
Expected on N GPUs: the per-class matching work divides by N while every inner iteration
adds one all-reduce of the container's gradients (~120 KB for CIFAR-10 1 IPC, ~1.2 MB at
10 IPC) and one per network step -- negligible against a ~1 s inner iteration, so time per
iteration should fall close to 1/N until each rank holds a single class.
Writes results/scale.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CIFAR_MINI, write


def condense(out: Path, nproc: int, classes: str | None, outer: int, inner: int, dataset: str) -> dict:
    args = ["condense", "--dataset", dataset, "--container", "hmn", "--ipc", "1", "--set", "update_mode=summed",
            "--set", f"outer={outer}", "--set", f"inner={inner}", "--set", "multisize=false", "--threads", "1",
            "--out", str(out)]
    if classes:
        args += ["--classes", classes]
    launcher = [sys.executable, "-m", "edgecond.cli"] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "edgecond.cli"]
    t = time.time()
    subprocess.run([*launcher, *args], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    rep = json.loads((out / "report.json").read_text())
    return {"wall_s": time.time() - t, "matching_s_per_rank": rep["rank_matching_seconds"],
            "peak_rss_mb_per_rank": rep["rank_peak_rss_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outer", type=int, default=1)
    ap.add_argument("--inner", type=int, default=4)
    args = ap.parse_args()
    dataset = f"npz:{CIFAR_MINI}" if CIFAR_MINI.is_file() else "digits"
    tmp = Path(tempfile.mkdtemp())
    ranks = {n: condense(tmp / f"ranks{n}", n, None, args.outer, args.inner, dataset) for n in (1, 2)}
    classes = {k: condense(tmp / f"classes{k}", 1, ",".join(map(str, range(k))), args.outer, args.inner, dataset)
               for k in (2, 5, 10)}
    lines = [f"Dataset {dataset.split('/')[-1]}, HMN 1 IPC, summed updates, {args.outer} x {args.inner} iterations.", "",
             "| ranks | wall time (s) | matching time per rank (s) | peak RSS per rank (MB) |", "|---|---|---|---|"]
    for n, r in ranks.items():
        lines.append(f"| {n} | {r['wall_s']:.1f} | {', '.join(f'{v:.1f}' for v in r['matching_s_per_rank'])} | "
                     f"{', '.join(f'{v:.0f}' for v in r['peak_rss_mb_per_rank'])} |")
    lines += ["", "| classes (1 process) | wall time (s) | matching time (s) |", "|---|---|---|"]
    for k, r in classes.items():
        lines.append(f"| {k} | {r['wall_s']:.1f} | {r['matching_s_per_rank'][0]:.1f} |")
    write("scale", {"dataset": dataset, "ranks": ranks, "classes": classes, "outer": args.outer,
                    "inner": args.inner}, "\n".join(lines))


if __name__ == "__main__":
    main()
