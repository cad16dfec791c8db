"""Accuracy per CPU-minute of condensation: which schedule buys the most accuracy for the time.

    python benchmarks/frontier.py --threads 1                       # cifar10_mini at 122,880 bytes (1 IPC)
    python benchmarks/frontier.py --ipcs 10 --methods hmn-int8-...  # another budget or point

Every point is a named schedule (common.VARIANTS: warm-start length, outer x inner iterations,
sampled batch) of the int8 HMN at the bytes of the papers' float32 IPC, condensed plainly by the
CLI at --threads (its wall time at one thread is its CPU time), evaluated with the quick protocol
over --seeds seeds. The references -- 8-bit pixels, uint8 herding, the default int8 HMN and
earlier points -- are benchmarks/bytes.py's rows, read from results/bytes.json, not rerun (a row
redone after a default changed also shows as it was: "hmn-int8 (until DATE)").
Writes results/frontier.{json,md} and results/frontier-<dataset>-ipc<N>.png.
"""

from __future__ import annotations

import json

from common import RESULTS, equal_budget_parser, equal_budget_rows, fmt, parse, schedule_of, variant, write
from edgecond.config import eval_config
from edgecond.plots import line_plot

IPCS = {"cifar10_mini": [1]}
POINTS = ["hmn-int8-warm-only", "hmn-int8-ws2000-b64-o8-cycle", "hmn-int8-b64-o4-cycle", "hmn-int8-bf16-b64-o7-cycle"]
REFERENCES = ["herding-u8", "pixel-u8", "hmn-int8", "hmn-int8-b64-o12-cycle"]


def schedule(method: str, row: dict) -> str:
    """'warm W[ on herding][ cosine], O x I, batch B[, bf16]' from the run's own config
    (bytes.py rows carry none: the variant's settings; rows from before a key was recorded: the variant's)."""
    cfg = row.get("schedule") or {}
    settings = variant(method)[1]
    if not cfg:
        return ", ".join(f"{k.split('.')[-1]} {v}" for k, v in settings.items() if k != "precision")

    def get(key: str, default):
        return cfg.get(key, settings.get(f"match.{key}", default))

    return (f"warm {cfg['warm_start']}" + (" on herding" if get("warm_targets", "random") == "herding" else "")
            + (" cosine" if get("warm_lr_schedule", "constant") == "cosine" else "")
            + f", {cfg['outer']} x {cfg['inner']}, batch {cfg['syn_batch']}"
            + (f", {get('compute_dtype', 'fp32')}" if get("compute_dtype", "fp32") != "fp32" else ""))


def minutes(row: dict) -> tuple[float, str]:
    """The condensation's CPU minutes: the process's CPU time where the run recorded it (a busy
    machine does not inflate it), else its wall time -- at one thread on an otherwise idle core
    (bytes.py's rows), the same."""
    if row.get("cpu_seconds"):
        return row["cpu_seconds"] / 60, "CPU"
    return row["condense_seconds"] / 60, "wall"


def table(payload: dict) -> str:
    """results/frontier.md: every point and reference by condensation time (benchmarks/tables.py renders it)."""
    rows = sorted(payload["rows"], key=lambda r: (r["dataset"], r["ipc"], minutes(r)[0]))
    out = ("| dataset | budget | method | source | schedule | condensation (min) | clock | test accuracy (%) | seeds |\n"
           "|---|---|---|---|---|---|---|---|---|\n")
    return out + "\n".join(
        f"| {r['dataset']} | {r['ipc']} IPC | {r['method']} | {r.get('source', 'frontier')} | {schedule(r['method'], r)} | "
        f"{minutes(r)[0]:.1f} | {minutes(r)[1]} | {fmt(r['accuracies'])} | {len(r['seeds'])} |" for r in rows)


def plot(rows: list[dict]) -> None:
    for dataset, ipc in dict.fromkeys((r["dataset"], r["ipc"]) for r in rows):
        at = [r for r in rows if (r["dataset"], r["ipc"]) == (dataset, ipc)]
        line_plot({r["method"]: ([minutes(r)[0]], [100 * r["accuracy_mean"]],
                                 [100 * r["accuracy_std"]]) for r in at},
                  RESULTS / f"frontier-{dataset}-ipc{ipc}.png", xlabel="condensation CPU-minutes (1 thread)",
                  ylabel="test accuracy (%)", title=f"{dataset}, {ipc} IPC of bytes: accuracy per CPU-minute")


def main() -> None:
    ap = equal_budget_parser(__doc__, "methods", POINTS)
    ap.set_defaults(datasets=",".join(IPCS))  # the frontier's budgets are cifar10_mini's
    args = parse(ap)
    rows = equal_budget_rows("frontier", args, IPCS, args.methods.split(","), lambda k: k, lambda rep, ev: {
        "precision": rep["precision"], "images_per_class": rep["instances_per_class"],
        "stored_bytes": rep["stored_bytes"], "condense_seconds": rep["condense_seconds"],
        "cpu_seconds": rep.get("cpu_seconds"), "warm_start_seconds": rep.get("warm_start", {}).get("seconds"),
        "schedule": schedule_of(rep)})
    # (rows with an "until" are earlier values shown beside the row that superseded them: made below)
    mine = [r for r in rows if r.get("source", "frontier") == "frontier" and "until" not in r]
    refs = [{**r, "source": "bytes.py"} for r in json.loads((RESULTS / "bytes.json").read_text())["rows"]
            if r["method"] in REFERENCES and (r["dataset"], r["ipc"]) in {(m["dataset"], m["ipc"]) for m in mine}]
    # a reference whose default changed is shown as it was too: the point the change moved from
    refs += [{**old, "dataset": r["dataset"], "ipc": r["ipc"], "method": f"{r['method']} (until {old['until']})",
              "source": r.get("source", "frontier")} for r in mine + refs for old in r.get("superseded", [])]
    payload = {"seeds": args.seeds, "eval": eval_config("quick").__dict__, "rows": mine + refs}
    plot(payload["rows"])
    write("frontier", payload, table(payload))


if __name__ == "__main__":
    main()
