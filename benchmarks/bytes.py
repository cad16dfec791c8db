"""Containers at equal *bytes*: what a device stores, whatever the precision.

    python benchmarks/bytes.py                                  # digits 5 IPC, cifar10_mini 1 and 10 IPC
    python benchmarks/bytes.py --datasets digits --threads 1

The budget is the bytes of the papers' float32 IPC (CIFAR-10 1 IPC = 122,880 bytes). Every row
fills exactly those bytes (`edgecond condense --ipc N --set precision=P`):
  random-u8, herding-u8   real images stored as uint8 pixels: 4x the images of the float IPC
  pixel-fp32, pixel-u8    IDC-I synthetic images, float32 or uint8 (quantised during matching)
  hmn-fp32/-fp16/-int8    the HMN sized for the bytes at its precision and matched through the
                          rounding (fake quantisation with the straight-through estimator)
Matched containers are condensed plainly (no multisize, no pruning: common.PLAIN) with the quick
preset, each by the CLI in its own process under benchmarks/runs/ (resumable), then evaluated
with the quick protocol over --seeds seeds on the images the container regenerates as stored.
Rows are cached in results/bytes.json and skipped on a rerun (--fresh redoes them; --supersede REASON
redoes the --methods rows after a default they use changed, keeping the old rows beside them).
"""

from __future__ import annotations

from common import (CORESETS, RESULTS, equal_budget_parser, equal_budget_rows, fmt, parse, schedule_of,
                    superseded_lines, verdict_table, write)
from edgecond.config import eval_config
from edgecond.plots import bar_plot

IPCS = {"digits": [5], "cifar10_mini": [1, 10]}
METHODS = ["random-u8", "herding-u8", "pixel-fp32", "pixel-u8", "hmn-fp32", "hmn-fp16", "hmn-int8"]


def order(key):
    dataset, ipc, method = key
    return (dataset != "digits", dataset, ipc, METHODS.index(method) if method in METHODS else 99, method)


def best_hmn(at: dict) -> dict | None:
    """The best HMN precision of one budget's rows (method -> row)."""
    hmns = [r for m, r in at.items() if m.startswith("hmn-")]
    return max(hmns, key=lambda r: r["accuracy_mean"]) if hmns else None


def verdicts(rows: list[dict]) -> str:
    return verdict_table(rows, best_hmn, ("random-u8", "herding-u8", "pixel-u8"), "Best HMN precision against the 8-bit baselines")


def plot(rows: list[dict]) -> None:
    """results/bytes.png: test accuracy of every method, one panel per dataset and budget."""
    groups: dict = {}
    for r in rows:
        bars = groups.setdefault(f"{r['dataset']} {r['ipc']} IPC", {})
        bars[r["method"]] = (100 * r["accuracy_mean"], 100 * r["accuracy_std"])
    bar_plot(groups, RESULTS / "bytes.png", "test accuracy (%)", "at equal bytes (benchmarks/bytes.py)")


def main() -> None:
    args = parse(equal_budget_parser(__doc__, "methods", METHODS))
    rows = equal_budget_rows("bytes", args, IPCS, args.methods.split(","), order, lambda rep, ev: {
        "precision": rep["precision"], "images_per_class": rep["instances_per_class"],
        "stored_values": rep["stored_floats"], "stored_bytes": rep["stored_bytes"],
        "budget_bytes": rep["budget_bytes"], "parts_bytes": rep["parts_bytes"],
        "condense_seconds": rep["condense_seconds"], "cpu_seconds": rep.get("cpu_seconds"),
        **({"schedule": schedule_of(rep)} if rep["kind"] not in CORESETS else {})})
    plot(rows)
    payload = {"seeds": args.seeds, "eval": eval_config("quick").__dict__, "rows": rows}
    write("bytes", payload, table(payload) + "\n\n![accuracy at equal bytes](bytes.png)")


def table(payload: dict) -> str:
    """results/bytes.md: every row, then the verdicts (benchmarks/tables.py renders it from the json)."""
    rows = payload["rows"]
    out = ("| dataset | budget | method | precision | images/class | stored values | stored / budget bytes | "
           "test accuracy (%) | seeds | condense time (s) |\n|---|---|---|---|---|---|---|---|---|---|\n")
    out += "\n".join(
        f"| {r['dataset']} | {r['ipc']} IPC | {r['method']} | {r['precision']} | {r['images_per_class']} | "
        f"{r['stored_values']:,} | {r['stored_bytes']:,} / {r['budget_bytes']:,} | "
        f"{fmt(r['accuracies'])} | {len(r['seeds'])} | {r['condense_seconds']:.0f} |" for r in rows)
    out += "\n\n± is the sample standard deviation over the evaluation seeds (n in the seeds column)."
    return out + superseded_lines(rows) + verdicts(rows)


if __name__ == "__main__":
    main()
