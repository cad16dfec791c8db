"""Shared plumbing for the benchmark recipes: machine facts, named variants, condensation runs, the
result cache, markdown tables. Recipes use edgecond's public API only (the CLI and `edgecond.*`)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from edgecond.io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = Path(__file__).resolve().parent / "runs"
CORESETS = ("random", "herding")

# Every container in a comparison is condensed plainly: the same gradient-matching loss for all
# (the HMN paper's Table 3) -- no multisize loss, no pruning, the condensation's own instance order.
PLAIN = {"match.multisize": False, "prune.method": "none", "prefix_order": "none"}

# the frontier's herding points: the int8 HMN warm-started on the herding coreset with bf16 passes;
# WARM_ONLY: one outer iteration of one step per class, i.e. the warm start alone
HERD_BF16 = {"precision": "int8", "match.warm_targets": "herding", "match.compute_dtype": "bf16"}
WARM_ONLY = {"match.outer": 1, "match.inner": 1}

# variants condensed with the CLI's defaults (MDC's multisize loss, the prefix order) instead of PLAIN:
# the acceptance names the default command, and any key PLAIN sets counts as the user's
AS_CLI = {"hmn-int8-cli"}

# Named variants: a kind plus config settings (`edgecond condense --container KIND --set KEY=VALUE`).
VARIANTS: dict[str, tuple[str, dict]] = {
    "haba-contrast": ("haba", {"match.haba_contrast": 0.1}),  # HaBa's lambda_cos
    # the HMN paper's random initialisation and Table 7 shapes instead of the quick warm start and cap
    "hmn-cold": ("hmn", {"match.warm_start": 0, "container.max_instances": 0}),
    "hmn-dectiers": ("hmn", {"container.decoder": "tiers"}),  # the solver's decoder; the cap's surplus widens memories
    "hmn-dec64x32-ws1000-dlr1": ("hmn", {"container.decoder": "64x32", "match.warm_start": 1000,
                                         "match.decoder_lr": 1.0}),
    "hmn-dec64x32-ws4000-dlr1": ("hmn", {"container.decoder": "64x32", "match.warm_start": 4000,
                                         "match.decoder_lr": 1.0}),
    "hmn-dec64x32-ws4000-dlr0": ("hmn", {"container.decoder": "64x32", "match.warm_start": 4000,
                                         "match.decoder_lr": 0.0}),
    "hmn-shared": ("hmn", {"match.subset_shared": True}),  # with multisize: the subset loss trains shared tiers
    # storage precisions at equal bytes (benchmarks/bytes.py): u8 = 8-bit pixels (the int8 setting)
    "random-u8": ("random", {"precision": "int8"}),
    "herding-u8": ("herding", {"precision": "int8"}),
    "pixel-fp32": ("pixel", {}),
    "pixel-u8": ("pixel", {"precision": "int8"}),
    "hmn-fp32": ("hmn", {}),
    "hmn-fp16": ("hmn", {"precision": "fp16"}),
    "hmn-int8": ("hmn", {"precision": "int8"}),
    # instances decoupled from the matching batch (#33): the HMN paper's 278-ish instances per class,
    # 128 of them matched per class step, every one visited evenly (match.instance_sampling=cycle)
    "hmn-int8-i280-cycle": ("hmn", {"precision": "int8", "container.max_instances": 280,
                                    "match.instance_sampling": "cycle"}),
    # a smaller sampled batch: half the synthetic images per class step (benchmarks/speed.py: the
    # synthetic forward and the double backward are ~3/4 of a step)
    "hmn-int8-b64-cycle": ("hmn", {"precision": "int8", "match.syn_batch": 64, "match.instance_sampling": "cycle"}),
    # ... and 12 outer iterations instead of 20: a point aimed at 10 CPU-minutes at 1 IPC
    "hmn-int8-b64-o12-cycle": ("hmn", {"precision": "int8", "match.syn_batch": 64, "match.outer": 12,
                                       "match.instance_sampling": "cycle"}),
    # the frontier (benchmarks/frontier.py): warm start alone (one outer iteration of one step per
    # class), and schedules aimed at 10 CPU-minutes that split them between warm start and matching
    "hmn-int8-warm-only": ("hmn", {"precision": "int8", "match.outer": 1, "match.inner": 1}),
    "hmn-int8-ws2000-b64-o8-cycle": ("hmn", {"precision": "int8", "match.warm_start": 2000, "match.syn_batch": 64,
                                             "match.outer": 8, "match.instance_sampling": "cycle"}),
    "hmn-int8-b64-o4-cycle": ("hmn", {"precision": "int8", "match.syn_batch": 64, "match.outer": 4,
                                      "match.instance_sampling": "cycle"}),
    # bf16 passes (speed.py: 1.2x a class step, 1.55x a warm-start step): 7 outer iterations fit ~10 minutes
    "hmn-int8-bf16-b64-o7-cycle": ("hmn", {"precision": "int8", "match.compute_dtype": "bf16", "match.syn_batch": 64,
                                           "match.outer": 7, "match.instance_sampling": "cycle"}),
    # the warm start fits the herding coreset instead of a random one (warmstart.py): alone, and
    # with 5 bf16 outer iterations (the feature network's ~100 s taken from the matching)
    "hmn-int8-herd-bf16-warm-only": ("hmn", {**HERD_BF16, **WARM_ONLY}),
    "hmn-int8-herd-bf16-b64-o5-cycle": ("hmn", {**HERD_BF16, "match.syn_batch": 64, "match.outer": 5,
                                                "match.instance_sampling": "cycle"}),
    # ... and a warm start twice as long instead of matching (its MSE still falls slowly at 4,000)
    "hmn-int8-herd-bf16-ws8000-warm-only": ("hmn", {**HERD_BF16, **WARM_ONLY, "match.warm_start": 8000}),
    # ... with the budget solver's most (157) or about half (63) the instances per class at 1 IPC
    "hmn-int8-herd-bf16-i160-warm-only": ("hmn", {**HERD_BF16, **WARM_ONLY, "container.max_instances": 160}),
    "hmn-int8-herd-bf16-i64-warm-only": ("hmn", {**HERD_BF16, **WARM_ONLY, "container.max_instances": 64}),
    # ... the same in fp32 (bf16 is an explicit setting, not a preset's)
    "hmn-int8-herd-i64-warm-only": ("hmn", {"precision": "int8", "match.warm_targets": "herding", **WARM_ONLY,
                                            "container.max_instances": 64}),
    # `edgecond condense --budget B` as a user runs it: the CLI's own defaults, not PLAIN (AS_CLI)
    "hmn-int8-cli": ("hmn", {"precision": "int8"}),
    # 10 IPC: the default schedule on herding targets, bf16 passes paying for the feature network
    "hmn-int8-herd-bf16": ("hmn", HERD_BF16),
    # the warm start's rate annealed (cosine) instead of held: the same steps, a settled fit
    "hmn-int8-herd-bf16-ws8000-cos-warm-only": ("hmn", {**HERD_BF16, **WARM_ONLY, "match.warm_start": 8000,
                                                        "match.warm_lr_schedule": "cosine"}),
    # ... then half the default's matching, the two inside 1,932 CPU-s (the default's time at 10 IPC)
    "hmn-int8-herd-bf16-ws10000-cos-o10": ("hmn", {**HERD_BF16, "match.warm_start": 10000, "match.outer": 10,
                                                   "match.warm_lr_schedule": "cosine"}),
}


def variant(name: str) -> tuple[str, dict]:
    """(kind, settings) of a named variant or a plain kind ('NAME@seedN': NAME's)."""
    name = split_seed(name)[0]
    return VARIANTS.get(name, (name, {}))


def split_seed(method: str) -> tuple[str, int]:
    """'hmn-int8@seed1' -> ('hmn-int8', 1): a row of another condensation seed (default 0)."""
    name, _, seed = method.partition("@seed")
    if seed and not seed.isdigit():
        raise SystemExit(f"{method!r}: write another condensation seed as NAME@seedN")
    return name, int(seed or 0)


def condense_run(dataset: str, name: str, ipc: float, seed: int, threads: int, multisize: bool = False) -> dict:
    """Condense (or reuse) benchmarks/runs/<dataset>-<name>[-ms]-ipc<ipc>-s<seed> with `edgecond condense`
    in its own process (so its wall time and peak RSS are its own); returns its report with "dir".

    Plain (PLAIN) by default; multisize=True adds MDC's subset loss (benchmarks/multisize.py).
    An interrupted condensation resumes from its checkpoint."""
    out = RUNS / f"{short(dataset)}-{name}{'-ms' if multisize else ''}-ipc{ipc:g}-s{seed}"
    args = condense_args(dataset, name, ipc, seed, multisize)
    if (out / "config.json").is_file():
        retire_stale(out, args)
    if not (out / "container.safetensors").is_file():
        cmd = [sys.executable, "-m", "edgecond.cli", "condense", *args, "--out", str(out), "--threads", str(threads),
               "--resume"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return {"dir": str(out), **json.loads((out / "report.json").read_text())}


def condense_args(dataset: str, name: str, ipc: float, seed: int, multisize: bool = False) -> list[str]:
    """`edgecond condense` arguments (no --out) for the variant `name`: PLAIN unless AS_CLI."""
    kind, settings = variant(name)
    if kind not in CORESETS and name not in AS_CLI:
        settings = {**PLAIN, "match.multisize": multisize, **settings}
    args = ["--dataset", dataset, "--container", kind, "--ipc", f"{ipc:g}", "--seed", str(seed)]
    return args + [a for k, v in settings.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def retire_stale(out: Path, args: list[str]) -> None:
    """Move a run directory condensed under other settings than today's (a preset's default has
    changed since) to <out>-until-<date>, so that it is condensed again instead of reused."""
    today = subprocess.run([sys.executable, "-m", "edgecond.cli", "config", *args], check=True,
                           capture_output=True, text=True).stdout
    if same_settings(json.loads(today), json.loads((out / "config.json").read_text())):
        return
    old = out.with_name(f"{out.name}-until-{_dt.date.today().isoformat()}")
    print(f"{out.name} was condensed under other settings than today's; kept as {old.name}", flush=True)
    out.rename(old)


def same_settings(today, old) -> bool:
    """Whether a run's config.json (`old`) holds today's settings. A key added to the config since
    is not a change: a new key comes with the default that keeps the old behaviour."""
    if isinstance(today, dict) and isinstance(old, dict):
        return old.keys() <= today.keys() and all(same_settings(today[k], v) for k, v in old.items())
    return today == old


def equal_budget_parser(doc: str, what: str, default: list[str]) -> argparse.ArgumentParser:
    """parser() plus what equal_budget_rows reads: --<what> (the rows), --ipcs, --fresh."""
    ap = parser(doc)
    ap.add_argument(f"--{what}", default=",".join(default),
                    help="comma-separated rows (common.VARIANTS); NAME@seedN condenses with seed N instead of 0")
    ap.add_argument("--ipcs", default=None, help="override the per-dataset IPCs, e.g. 5")
    ap.add_argument("--fresh", action="store_true", help="ignore cached rows")
    ap.add_argument("--supersede", metavar="REASON", default=None,
                    help="redo the --methods rows although cached (a default they use changed); each old row is "
                         "kept, dated and with REASON, under the new row's `superseded`")
    return ap


def equal_budget_rows(name: str, args, ipcs: dict, methods: list[str], order, row) -> list[dict]:
    """The rows of results/<name>.json for every dataset x IPC x method: cached rows with the same
    seeds are kept (unless args.fresh); the others are condensed (condense_run), evaluated on the
    images they regenerate with the quick protocol over args.seeds seeds, and made a row by
    row(rep, ev) (rep: the run's report). The file is rewritten after every row (other processes'
    finished rows kept), so a killed recipe loses at most the row it was on."""
    from edgecond.config import eval_config
    from edgecond.data import load_dataset
    from edgecond.evaluation import evaluate_images
    from edgecond.io import load_container

    cached = {} if args.fresh else cached_rows(name, "dataset", "ipc", "method")
    cfg = eval_config("quick")
    mine: dict = {}

    def rows() -> list[dict]:
        results = {**cached_rows(name, "dataset", "ipc", "method"), **mine}
        return [results[k] for k in sorted(results, key=order)]

    for dataset in args.datasets:
        if not args.ipcs and short(dataset) not in ipcs:
            raise SystemExit(f"{name}.py measures {', '.join(ipcs)} by default; give --ipcs for {short(dataset)}")
        data = load_dataset(dataset)
        for ipc in [int(v) for v in args.ipcs.split(",")] if args.ipcs else ipcs[short(dataset)]:
            for method in methods:
                key = (short(dataset), ipc, method)
                if key in cached and cached[key]["seeds"] == list(range(args.seeds)) and not args.supersede:
                    continue
                base, seed = split_seed(method)
                rep = condense_run(dataset, base, ipc, seed=seed, threads=args.threads)
                cont, _ = load_container(rep["dir"])
                x, y = cont.images()  # as the container generates them: from its values as stored
                ev = evaluate_images(x, y, data, cfg, seeds=args.seeds, progress=False)
                mine[key] = {"dataset": key[0], "ipc": ipc, "method": method, **ev, **row(rep, ev),
                             "provenance": {**provenance(ev, args.threads), "condense_seconds": rep["condense_seconds"]}}
                if args.supersede and key in cached:
                    mine[key]["superseded"] = retired(cached[key], args.supersede)
                print(*key, fmt(ev["accuracies"]), f"{rep['condense_seconds']:.0f}s", flush=True)
                write(name, {"seeds": args.seeds, "eval": cfg.__dict__, "rows": rows()}, "(partial)")
    return rows()


def schedule_of(rep: dict) -> dict:
    """The matching schedule a run's report records (frontier.py's schedule column)."""
    return {k: rep["config"]["match"].get(k, default) for k, default in (
        ("warm_start", 0), ("outer", 0), ("inner", 0), ("syn_batch", 0), ("compute_dtype", "fp32"),
        ("warm_targets", "random"), ("warm_lr_schedule", "constant"))}


def retired(row: dict, reason: str) -> list[dict]:
    """`row`'s superseded list with `row` itself added (its values and provenance, dated, with `reason`)."""
    old = {k: v for k, v in row.items() if k not in ("superseded", "dataset", "ipc", "method")}
    return row.get("superseded", []) + [{**old, "until": _dt.date.today().isoformat(), "reason": reason}]


def superseded_lines(rows: list[dict]) -> str:
    """Markdown lines naming every superseded value of `rows`: what it read, when and why it changed."""
    lines = [f"- {r['dataset']} {r['ipc']} IPC {r['method']}: until {old['until']} it read {fmt(old['accuracies'])}"
             + (f" in {old['condense_seconds']:.0f} s" if old.get("condense_seconds") else "")
             + f" ({old['provenance'].get('date', '')[:10]}, commit {old['provenance'].get('commit', '?')}): "
             + old["reason"]
             for r in rows for old in r.get("superseded", [])]
    return "\n\nSuperseded rows, kept:\n\n" + "\n".join(lines) if lines else ""


def cached_rows(name: str, *key: str) -> dict:
    """results/<name>.json's rows, keyed by the row fields `key` (the one cache reader of every recipe)."""
    path = RESULTS / f"{name}.json"
    rows = json.loads(path.read_text()).get("rows", []) if path.is_file() else []
    return {tuple(r[k] for k in key): r for r in rows}
CIFAR_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_mini.npz"


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "date": _dt.date.today().isoformat()}


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def commit() -> str:
    """The checkout's commit, '+changes' when tracked files differ from it; 'unknown' outside git."""
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=RESULTS.parent).stdout.strip()
    try:
        head = git("rev-parse", "--short=12", "HEAD")
        return (head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")) or "unknown"
    except OSError:
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name and the instruction set torch's kernels dispatch on (AVX2, AVX512, ...):
    the same container, seed and thread count evaluate differently on another ISA."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def provenance(ev: dict | None = None, threads: int | None = None, device: str = "cpu") -> dict:
    """What a results row needs to be traced and rerun: its own command, commit, date, versions,
    thread count, device, CPU, and (given the evaluation `ev`) its seeds and per-seed values --
    a results file's header names only its last invocation. write() stamps rows made without one;
    benchmarks/provenance.py backfilled the rows made before rows carried one."""
    import onnxruntime

    out = {"command": command(), "commit": commit(), "date": _dt.datetime.now().isoformat(timespec="seconds"),
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "threads": threads or torch.get_num_threads(), "device": device,
           "machine": f"{os.cpu_count()}-core {cpu_model()}"}
    if ev is not None:
        out.update({"seeds": ev["seeds"], "per_seed": ev["accuracies"]})
    return out


def welch(a: list[float], b: list[float]) -> dict:
    """a vs b over seeds: the difference of means, each side's sample standard deviation (n - 1),
    and Welch's t-test (unequal variances; two-sided p). The one function verdicts come from."""
    import numpy as np
    from scipy import stats

    import warnings

    a, b = np.asarray(a, float), np.asarray(b, float)
    with warnings.catch_warnings():  # a side whose seeds agree exactly (sd 0) makes scipy warn
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_ind(a, b, equal_var=False)
    return {"diff": float(a.mean() - b.mean()), "sd_a": float(a.std(ddof=1)), "sd_b": float(b.std(ddof=1)),
            "n_a": len(a), "n_b": len(b), "t": float(t.statistic), "p": float(t.pvalue)}


def verdict(a: list[float], b: list[float], alpha: float = 0.05) -> str:
    """'beats', 'loses to' or 'ties' (no difference Welch's test can tell at `alpha`)."""
    w = welch(a, b)
    if not w["p"] < alpha:
        return "ties"
    return "beats" if w["diff"] > 0 else "loses to"


def verdict_table(rows: list[dict], contender, baselines: tuple[str, ...], title: str) -> str:
    """At each (dataset, ipc): contender(rows there, by method) against each baseline present --
    the margin, both sample standard deviations with n, Welch's p and verdict(). The one place
    the docs' "beats" and "ties" come from."""
    out = []
    for dataset, ipc in dict.fromkeys((r["dataset"], r["ipc"]) for r in rows):
        at = {r["method"]: r for r in rows if (r["dataset"], r["ipc"]) == (dataset, ipc)}
        best = contender(at)
        for base in baselines:
            if best is None or base not in at:
                continue
            b = at[base]
            w = welch(best["accuracies"], b["accuracies"])
            out.append(f"| {dataset} | {ipc} IPC | {best['method']} | {base} | {100 * w['diff']:+.1f} | "
                       f"{100 * w['sd_a']:.1f} (n={w['n_a']}), {100 * w['sd_b']:.1f} (n={w['n_b']}) | "
                       f"{w['p']:.3f} | {verdict(best['accuracies'], b['accuracies'])} |")
    head = (f"\n\n{title} (margin in points; sample standard deviations; Welch's t-test, two-sided, "
            "verdict at p < 0.05):\n\n"
            "| dataset | budget | contender | baseline | margin | sample sd (n) | p | verdict |\n"
            "|---|---|---|---|---|---|---|---|\n")
    return head + "\n".join(out) if out else ""


def dataset_names(names: list[str]) -> list[str]:
    """'cifar10_mini' -> its npz path when present; skips it (with a note) when absent."""
    out = []
    for n in names:
        if n == "cifar10_mini":
            if CIFAR_MINI.is_file():
                out.append(f"npz:{CIFAR_MINI}")
            else:
                print(f"skipping cifar10_mini: {CIFAR_MINI} not found", file=sys.stderr)
        else:
            out.append(n)
    return out


def parser(doc: str, *, seeds: int = 3, threads: int = 2) -> argparse.ArgumentParser:
    """The options every recipe shares: --datasets, --seeds (evaluation seeds), --threads (torch's)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,cifar10_mini", help="comma-separated; cifar10_mini is ../shared's")
    ap.add_argument("--seeds", type=int, default=seeds, help="evaluation seeds")
    ap.add_argument("--threads", type=int, default=threads, help="torch threads (one job per core is fastest)")
    return ap


def parse(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, set torch's thread count, and resolve --datasets to loadable names."""
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.datasets = dataset_names(args.datasets.split(","))
    return args


def short(dataset: str) -> str:
    return "cifar10_mini" if dataset.endswith("cifar10_mini.npz") else dataset


def fmt(values: list[float]) -> str:
    """Per-seed accuracies (fractions) as 'mean ± sd' in percent: the sample standard deviation
    (n - 1; edgecond.evaluation.sample_sd), n being the seeds column or the prose's 'n = '."""
    import numpy as np

    from edgecond.evaluation import sample_sd

    return f"{100 * float(np.mean(values)):.1f} ± {100 * sample_sd(values):.1f}"


def fmt_population(mean: float, std: float, n: int) -> str:
    """fmt() for a row that kept only a mean, np.std's population value and its seed count (rows
    before 2026-12-06 without per-seed values): the sample sd is std * sqrt(n / (n - 1)), exactly."""
    sd = std * (n / (n - 1)) ** 0.5 if n > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def stamp(payload: dict) -> None:
    """Give every row of `payload` this invocation made (those without a provenance) its own; a
    file without rows is one measurement and gets one at the top level."""
    rows = payload.get("rows", payload.get("results"))
    for row in rows if isinstance(rows, list) else [payload]:
        if "provenance" not in row:
            ev = row if isinstance(row.get("seeds"), list) and "accuracies" in row else None
            row["provenance"] = provenance(ev)


def header(payload: dict) -> str:
    """A results .md's first lines: the invocation that last wrote the file, and where."""
    m = payload["machine"]
    return (f"<!-- generated by {payload['command']} -->\n"
            f"Command: `{payload['command']}` — {m['date']}, {m['cores']}-core {m['cpu']} CPU, "
            f"torch {m['torch']} ({m['torch_threads']} threads).\n\n")


def write(name: str, payload: dict, table: str) -> None:
    """results/<name>.json (rows stamped with their provenance) and results/<name>.md (header +
    `table`, the recipe's table(payload): benchmarks/tables.py renders it again from the json)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"command": command(), "machine": machine(), **payload}
    stamp(payload)
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(payload, indent=2))  # other processes read it
    atomic_write_text(RESULTS / f"{name}.md", header(payload) + table + "\n")
    print(header(payload) + table)
