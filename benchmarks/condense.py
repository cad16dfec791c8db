"""Containers at equal budget: random, herding, pixel, idc, haba and hmn, condensed with the quick preset.

    python benchmarks/condense.py                                   # digits 2/5 IPC, cifar10_mini 1/10 IPC
    python benchmarks/condense.py --datasets digits --kinds random,hmn --seeds 2

Containers are condensed plainly (no multisize loss, no pruning: every container under the
same gradient-matching loss, as the HMN paper's Table 3); `haba-contrast` is haba with HaBa's
adversarial contrastive term and the hmn-* variants are named config settings (common.VARIANTS: `hmn-cold` is the HMN
paper's random initialisation and Table 7 shapes instead of the quick preset's warm start and
instance cap; `hmn-dec...` the decoder study). benchmarks/pruning.py and
benchmarks/multisize.py measure pruning and multisize. Each container is made by the
`edgecond condense` CLI in its own process (so its wall time and peak RSS are its own) under benchmarks/runs/, then evaluated here with the quick
evaluation protocol over --seeds seeds. Finished rows are cached in
results/condense.json and skipped on a rerun (--fresh to redo them); an interrupted
condensation resumes from its checkpoint.
"""

from __future__ import annotations

from common import equal_budget_parser, equal_budget_rows, fmt, parse, verdict_table, write
from edgecond.config import eval_config
from edgecond.kinds import names

IPCS = {"digits": [2, 5], "cifar10_mini": [1, 10]}


# the default rows: every registered kind (coresets first, hmn last) and the comparison's variants
KINDS = [*names(matched=False), *(k for k in names(matched=True) if k != "hmn"),
         "haba-contrast", "hmn-cold", "hmn-dectiers", "hmn"]


def order(key):
    dataset, ipc, kind = key
    return (dataset != "digits", dataset, ipc, KINDS.index(kind) if kind in KINDS else 99, kind)


def main() -> None:
    args = parse(equal_budget_parser(__doc__, "kinds", KINDS))
    rows = equal_budget_rows("condense", args, IPCS, args.kinds.split(","), order, lambda rep, ev: {
        "images_per_class": rep["instances_per_class"], "stored_floats": rep["stored_floats"],
        "budget_floats": rep["budget_floats"], "condense_seconds": rep["condense_seconds"],
        "peak_rss_mb": rep["peak_rss_mb"]})
    payload = {"seeds": args.seeds, "eval": eval_config("quick").__dict__, "rows": rows}
    write("condense", payload, table(payload))


def table(payload: dict) -> str:
    """results/condense.md's table (benchmarks/tables.py renders it from results/condense.json)."""
    out = ("| dataset | IPC | container | images/class | stored / budget floats | test accuracy (%) | seeds | "
           "condense time (s) | peak RSS (MB) |\n|---|---|---|---|---|---|---|---|---|\n")
    return out + "\n".join(
        f"| {r['dataset']} | {r['ipc']} | {r['method']} | {r['images_per_class']} | "
        f"{r['stored_floats']:,} / {r['budget_floats']:,} | {fmt(r['accuracies'])} | {len(r['seeds'])} | "
        f"{r['condense_seconds']:.0f} | {r['peak_rss_mb']:.0f} |" for r in payload["rows"]) + verdict_table(
        payload["rows"], lambda at: at.get("hmn"), ("random", "herding", "pixel", "idc", "haba", "hmn-cold"),
        "The quick HMN against every other container and the cold-started HMN") + verdict_table(
        payload["rows"], lambda at: at.get("hmn-dectiers"), ("hmn-cold",),
        "Warm start alone (the solver's decoder, warm-started) against the cold-started HMN")


if __name__ == "__main__":
    main()
