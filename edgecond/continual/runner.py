"""Run every strategy of `edgecond continual` over seeds, resumably; write results.json/.md/.csv and
accuracy.png (HMN Fig. 4)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from edgecond_device.locking import exclusive

from ..budget import ipc_bytes
from ..data import Dataset
from ..evaluation import sample_sd
from ..io import atomic_write_text, remove_stale_temporaries
from ..plots import line_plot
from .harness import ContinualConfig, run_strategy, strategy_settings

KEYS = ("final_accuracy", "average_incremental_accuracy", "forgetting")


def previous_results(out: Path, data: Dataset, cfg: ContinualConfig, seeds: int) -> dict:
    """Per-strategy results `out/results.json` holds for exactly this configuration, seed count and
    (HMN strategies) condensation settings."""
    path = out / "results.json"
    if not path.is_file():
        return {}
    res = json.loads(path.read_text())
    if res.get("seeds") != seeds or res.get("config") != json.loads(json.dumps(asdict(cfg))):
        return {}
    return {n: v for n, v in res["strategies"].items() if v.get("settings") == strategy_settings(n, data, cfg)}


def run_continual(data: Dataset, strategies: list[str], cfg: ContinualConfig, seeds: int, out: Path,
                  device: str = "cpu", log=print, reuse: bool = False, seed_dir: Path | None = None) -> dict:
    """Every strategy over `seeds` seeds. `reuse`: strategies that `out` already holds for the same
    configuration and seeds are taken from there, so adding a strategy runs only that one, and
    each finished (strategy, seed) in `out/runs/` is too, so a killed run loses at most the seed
    it was training (its HMN condensations resume from their own checkpoints in `out/models/`).
    `seed_dir` moves those per-seed files elsewhere (a benchmark keeps them with its results, so
    a run spread over several machines resumes from what was committed).
    results.json is rewritten after every strategy and keeps the other strategies it held; the
    tables and the plot show `strategies`. One process at a time writes `out` (a second one is
    refused with the holder's pid: edgecond_device.locking)."""
    with exclusive(out):
        return _run_continual(data, strategies, cfg, seeds, Path(out), device, log, reuse, seed_dir)


def _run_continual(data: Dataset, strategies: list[str], cfg: ContinualConfig, seeds: int, out: Path,
                   device: str, log, reuse: bool, seed_dir: Path | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    seed_dir = Path(seed_dir) if seed_dir is not None else out / "runs"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for d in (out, seed_dir, out / "models"):
        remove_stale_temporaries(d)  # left by a run that was killed mid-write
    old = previous_results(out, data, cfg, seeds) if reuse else {}

    def payload(per: dict) -> dict:
        return {"dataset": data.name, "config": asdict(cfg), "seeds": seeds,
                "budget_bytes_fp32": ipc_bytes(cfg.ipc, data.image_shape, data.num_classes),
                "strategies": per}

    per = {}
    for name in strategies:
        if name in old:
            log(f"{name}: reused from {out / 'results.json'}")
            per[name] = old[name]
            continue
        runs = []
        settings = strategy_settings(name, data, cfg)
        key = {"dataset": data.name, "config": json.loads(json.dumps(asdict(cfg))), "settings": settings}
        for seed in range(seeds):
            done = seed_dir / f"{name}-s{seed}.json"
            kept = json.loads(done.read_text()) if reuse and done.is_file() else {}
            if {k: kept.get(k) for k in key} == key:
                log(f"{name}: seed {seed}: reused from {done}")
                runs.append(kept["result"])
                continue
            log(f"{name}: seed {seed} ...")
            runs.append(run_strategy(name, data, cfg, seed, out / "models", device))
            atomic_write_text(done, json.dumps({**key, "result": runs[-1]}))
            log(f"{name}: seed {seed}: final accuracy {runs[-1]['final_accuracy']:.3f}")
        per[name] = {
            **{k: float(np.mean([r[k] for r in runs])) for k in KEYS},
            **{f"{k}_std": sample_sd([r[k] for r in runs]) for k in KEYS},
            **{f"{k}_per_seed": [r[k] for r in runs] for k in KEYS},
            "buffer_bytes": int(np.mean([r["buffer_bytes"] for r in runs])),
            "accuracy_matrix": runs[0]["accuracy_matrix"],
            "seen_accuracy_mean": np.mean([r["seen_accuracy"] for r in runs], axis=0).tolist(),
            "seen_accuracy_std": (np.std([r["seen_accuracy"] for r in runs], axis=0, ddof=1) if len(runs) > 1
                                  else np.zeros(len(runs[0]["seen_accuracy"]))).tolist(),
            "condense_s_per_experience": _mean_timing(runs, "condense_s"),
            "regenerate_s_per_experience": _mean_timing(runs, "regenerate_s"),
            "train_s_per_experience": _train_seconds(runs, cfg.experiences),
            "settings": settings,
            "runs": runs,
        }
        atomic_write_text(out / "results.json", json.dumps(payload({**old, **per}), indent=1))
    res = payload(per)
    atomic_write_text(out / "results.md", markdown(res))
    atomic_write_text(out / "results.csv", to_csv(res))
    plot_seen_accuracy(res, out / "accuracy.png")
    return res


def plot_seen_accuracy(res: dict, path: Path) -> Path:
    """Accuracy on the classes seen so far after each experience, per strategy (HMN paper Fig. 4)."""
    e, name = res["config"]["experiences"], Path(str(res["dataset"])).name
    return line_plot({n: (list(range(1, e + 1)), v["seen_accuracy_mean"], v["seen_accuracy_std"])
                      for n, v in res["strategies"].items()}, path, xlabel="experience",
                     ylabel="accuracy on classes seen so far",
                     title=f"{name}: {e} experiences, {res['config']['ipc']:g} IPC buffer budget, "
                           f"{res['seeds']} seed(s)")


def _mean_timing(runs, key):
    vals = [t.get(key) for r in runs for t in r.get("timings", []) if t.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _train_seconds(runs, experiences: int) -> float | None:
    """A run's seconds per experience outside condensation and regeneration: training the learner
    and evaluating it on the test stream after each experience (wall clock, as `seconds` is).
    A condensation an earlier run left in the workdir (`cached`) took no time in this one. None
    when a run reused condensations without saying so (results from before 2026-12-07, whose
    difference can come out negative) -- an unknown time, not a wrong one."""
    per = []
    for r in runs:
        spent = sum((t.get("condense_s") or 0) * (not t.get("cached", False)) + (t.get("regenerate_s") or 0)
                    for t in r.get("timings", []))
        per.append((r["seconds"] - spent) / experiences)
    return float(np.mean(per)) if per and min(per) >= 0 else None


def markdown(res: dict) -> str:
    lines = ["| strategy | final accuracy (%) | average incremental (%) | forgetting (%) | buffer bytes | "
             "train + eval s / exp | condense s / exp | regenerate s / exp |", "|---|---|---|---|---|---|---|---|"]
    for name, v in res["strategies"].items():
        def f(k):
            return f"{100 * v[k]:.1f} ± {100 * v[k + '_std']:.1f}"
        lines.append(f"| {name} | {f('final_accuracy')} | {f('average_incremental_accuracy')} | {f('forgetting')} | "
                     f"{v['buffer_bytes']:,} | {' | '.join(timing_cells(v))} |")
    return "\n".join(lines) + "\n"


def timing_cells(v: dict) -> list[str]:
    """A row's train + eval, condense and regenerate seconds per experience as table cells; blank
    where a row has none (nothing condensed, or kept from before train time was recorded)."""
    t, c, g = (v.get(k) for k in ("train_s_per_experience", "condense_s_per_experience",
                                  "regenerate_s_per_experience"))
    return ["" if t is None else f"{t:.0f}", "" if c is None else f"{c:.0f}", "" if g is None else f"{g:.3f}"]


def to_csv(res: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    times = ("train_s_per_experience", "condense_s_per_experience", "regenerate_s_per_experience")
    w.writerow(["strategy", *KEYS, *(f"{k}_std" for k in KEYS), "buffer_bytes", *times])
    for name, v in res["strategies"].items():
        w.writerow([name, *(v[k] for k in KEYS), *(v[f"{k}_std"] for k in KEYS), v["buffer_bytes"],
                    *("" if v.get(k) is None else v[k] for k in times)])
    return buf.getvalue()
