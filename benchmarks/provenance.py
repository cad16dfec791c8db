"""Give every results row the provenance it did not record, from the repository's own history.

    python benchmarks/provenance.py            # fill in what is missing (idempotent)
    python benchmarks/provenance.py --check    # exit 1 if a row lacks a commit or a thread count

Rows made since 2026-12-06 carry their own provenance (common.provenance: command, commit, date,
versions, thread count, device, CPU, seeds, per-seed values). Rows made before carried none: the
results file's header named only its last invocation. For those, git holds the rest. A row first
appears in the commit that recorded the run which made it, so that commit's copy of the file
names the invocation (command, thread count, torch version, date) that wrote it, and the code
that made it is that commit's parent plus the commit's own changes. This script finds, for every
row, the oldest commit whose copy of the file holds the same measured values, and writes what it
learns into the row's `provenance`, with `"backfilled": true` and a list of what stays unknown
(the CPU model was never recorded; a commit that recorded several invocations names only the
last). It also gives each row the command that reruns it today where a recipe can
(benchmarks/reproduce.py for the equal-budget rows).

Files without rows (device, device-quick, scale: one measurement each) get one provenance at
the top level; continual.json's rows are its `results` entries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import RESULTS

REPO = RESULTS.parents[1]
# recipes whose rows benchmarks/reproduce.py can rerun (keyed dataset, ipc, method)
REPRODUCIBLE = ("condense", "bytes")
UNKNOWN_ALWAYS = ["CPU model and instruction set (not recorded before 2026-12-06)", "onnxruntime version"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, check=True).stdout


def history(path: str) -> list[tuple[str, str, dict]]:
    """(commit, ISO date, parsed file) for every commit that changed `path`, oldest first."""
    out = []
    for line in git("log", "--reverse", "--format=%H %aI", "--", path).splitlines():
        sha, date = line.split()
        try:
            out.append((sha, date, json.loads(git("show", f"{sha}:{path}"))))
        except (json.JSONDecodeError, subprocess.CalledProcessError):
            continue
    return out


def rows_of(payload: dict) -> list[dict] | None:
    if isinstance(payload.get("rows"), list):
        return payload["rows"]
    if isinstance(payload.get("results"), list):
        return payload["results"]
    return None


def measured(row: dict) -> dict:
    """The row's measured values: numbers and lists of numbers (not names, not settings)."""
    skip = {"provenance", "config", "seeds", "ipc", "budget_bytes", "budget_floats"}

    def numeric(v):
        if isinstance(v, bool):
            return False
        if isinstance(v, float):
            return True
        if isinstance(v, (list, dict)):
            items = v.values() if isinstance(v, dict) else v
            return any(numeric(x) for x in items)
        return False
    return {k: v for k, v in row.items() if k not in skip and numeric(v)}


def names(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (str, int)) and not isinstance(v, bool)
            and k not in ("condense_seconds",)}


def same(row: dict, old: dict) -> bool:
    """Whether `old` is `row` as first recorded: the names they share agree, and so does every
    measured value they share (fields added to rows later are not held against the old copy).
    Rows with per-seed accuracies are matched on those and their dataset and IPC alone, so a
    row renamed later (hmn -> hmn-cold) is traced to the run that made it."""
    if "accuracies" in row and "accuracies" in old:
        return all(row.get(k) == old.get(k) for k in ("accuracies", "dataset", "ipc"))
    a, b = measured(row), measured(old)
    shared = set(a) & set(b)
    na, nb = names(row), names(old)
    return bool(shared) and all(a[k] == b[k] for k in shared) and all(na[k] == nb[k] for k in set(na) & set(nb))


def origin(row: dict, hist: list, top: bool = False) -> tuple[str, str, dict] | None:
    for sha, date, payload in hist:
        olds = [payload] if top else (rows_of(payload) or [])
        if any(same(row, o) for o in olds):
            return sha, date, payload
    return None


def backfilled(name: str, row: dict, found: tuple[str, str, dict] | None) -> dict:
    prov = {"backfilled": True, "unknown": list(UNKNOWN_ALWAYS)}
    if found is None:
        prov["unknown"] += ["commit (no committed copy of the file holds these values)"]
        return prov
    sha, date, payload = found
    m = payload.get("machine", {})
    prov.update({"commit": sha[:12], "date": date, "recorded_invocation": payload.get("command"),
                 "threads": m.get("torch_threads"), "torch": m.get("torch"), "device": "cpu",
                 "machine": f"{m.get('cores', '?')}-core {m.get('cpu', '?')} (model not recorded)",
                 "code": f"the parent of {sha[:12]} plus that commit's own changes"})
    if "seeds" in row and isinstance(row["seeds"], list) and "accuracies" in row:
        prov.update({"seeds": row["seeds"], "per_seed": row["accuracies"]})
    if name in REPRODUCIBLE and {"dataset", "ipc", "method"} <= set(row) and m.get("torch_threads"):
        prov["rerun"] = (f"python benchmarks/reproduce.py --source {name} --dataset {row['dataset']} "
                         f"--ipc {row['ipc']} --method {row['method']} --threads {m['torch_threads']}")
    if m.get("torch_threads") is None:
        prov["unknown"].append("thread count")
    prov["unknown"].append("which invocation, when the commit recorded several (the file names the last)")
    return prov


def complete(prov: dict | None) -> bool:
    return bool(prov) and bool(prov.get("commit")) and prov.get("commit") != "unknown" and prov.get("threads")


def fill(name: str, payload: dict) -> int:
    """Backfill `payload` (results/<name>.json) in place; returns how many rows it changed."""
    path = f"benchmarks/results/{name}.json"
    hist = history(path)
    rows = rows_of(payload)
    targets = [(r, False) for r in rows] if rows is not None else [(payload, True)]
    changed = 0
    for row, top in targets:
        if complete(row.get("provenance")):
            continue
        keep = {k: v for k, v in (row.get("provenance") or {}).items() if k in ("seeds", "per_seed")}
        row["provenance"] = {**backfilled(name, row, origin(row, hist, top)), **keep}
        changed += 1
    return changed


def missing(payload: dict) -> list[str]:
    rows = rows_of(payload)
    targets = rows if rows is not None else [payload]
    return [json.dumps(names(r))[:120] for r in targets if not complete(r.get("provenance"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report rows without a commit and a thread count")
    args = ap.parse_args()
    bad = 0
    for f in sorted(RESULTS.glob("*.json")):
        payload = json.loads(f.read_text())
        if args.check:
            for m in missing(payload):
                print(f"{f.name}: no commit or thread count: {m}")
                bad += 1
            continue
        n = fill(f.stem, payload)
        if n:
            from edgecond.io import atomic_write_text
            atomic_write_text(f, json.dumps(payload, indent=2))
        print(f"{f.name}: {n} rows backfilled")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
