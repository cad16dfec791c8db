"""`condense`: a dataset -> a container within its budget, a report, pictures. The one pipeline.

    settings -> resolve_config (config.py) -> build (the kind's registration, kinds/)
             -> warm start (warmstart.py) -> gradient matching (matching.py)
             -> prune back (pruning.py) -> prefix order (multisize.py) -> report, files

Selected kinds (the real-image coresets) replace the middle by their selection. The CLI, the
benchmarks and the continual buffers all come through here, so the same settings give the
same container whoever asks.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from edgecond_device.locking import exclusive

from . import checkpoint
from . import distributed as dist
from .config import CondenseConfig, Shape, resolve_config, validate
from .containers import Container
from .data import Dataset
from .io import (CONTAINER_FILE, atomic_write_text, container_meta, remove_stale_temporaries, save_container,
                 staging_dir)
from .kinds import Kind, budget_bytes, get, sized_config, stored_as
from .matching import Matcher
from .multisize import herding_prefix_order
from .plots import histogram, line_plot, sample_grid
from .pruning import prune_container
from .resources import peak_rss_mb
from .warmstart import warm_start

CONFIG_FILE = "config.json"


@dataclass
class CondenseResult:
    container: Container
    meta: dict
    report: dict = field(default_factory=dict)
    config: CondenseConfig | None = None


def dataset_meta(data: Dataset) -> dict:
    return {"dataset": data.name, "data_seed": data.meta.get("seed", 0),
            "val_fraction": data.meta.get("val_fraction", 0.1),
            "dataset_classes": data.meta.get("classes_selected")}


def settings_for(data: Dataset, kind: str = "hmn", ipc: float = 1.0, *, preset: str = "quick",
                 settings: dict[str, Any] | None = None) -> CondenseConfig:
    """The resolved settings `condense` would use for `kind` at `ipc` on `data` (config.resolve_config)."""
    return resolve_config(get(kind), ipc, image_shape=data.image_shape, num_classes=data.num_classes,
                          preset=preset, overrides=settings, world_size=dist.world_size())


def condense(data: Dataset, kind: str = "hmn", ipc: float = 1.0, *, preset: str = "quick", seed: int | None = None,
             settings: dict[str, Any] | None = None, config: CondenseConfig | None = None, device: str = "cpu",
             out: str | Path | None = None, progress: bool = True, resume: bool = False) -> CondenseResult:
    """Build a container of `kind` within the bytes of `ipc` float32 images per class, stored
    (and trained) at the `precision` setting: fp32 (the default), fp16 or int8 (quantise.py).

    `settings` are dotted config keys that override the preset (e.g. {"match.outer": 5});
    `config` is a resolved tree (e.g. a run's config.json) used as it is. With `out`, the
    run directory gets the container, config.json, report.json and pictures; matching kinds
    checkpoint there, and `resume` continues from the checkpoint.
    """
    if config is None:
        settings = dict(settings or {})
        if seed is not None:
            settings["seed"] = seed
        config = settings_for(data, kind, ipc, preset=preset, settings=settings)  # resolved and validated
    else:
        validate(config, get(config.kind), dist.world_size())  # a tree from a file or built by hand
    if out is None or not dist.is_main():  # replicas are identical: rank 0 alone writes (and locks)
        return _condense(data, config, device=device, out=out, progress=progress, resume=resume)
    with exclusive(out):  # one writer per run directory: a second process is refused before any work
        remove_stale_temporaries(out)  # left by a run that was killed mid-write
        return _condense(data, config, device=device, out=out, progress=progress, resume=resume)


def _condense(data: Dataset, config: CondenseConfig, *, device: str, out, progress: bool,
              resume: bool) -> CondenseResult:
    k = get(config.kind)
    t0, cpu0 = time.time(), time.process_time()
    if k.matched:
        container, order, extra = _condense_matching(data, config, k, device=device, out=out, progress=progress,
                                                     resume=resume)
    else:
        container, order = k.build(data, sized_config(k, data, config), device=device, progress=progress)
        container = stored_as(container, config, data)
        extra = {"instance_source": "train-split indices per class"}
    container.commit_storage()  # the file holds the values as stored: what the device will read
    meta = container_meta(container, classes=data.classes, mean=data.mean, std=data.std, budget_ipc=config.ipc,
                          budget_bytes=budget_bytes(config, Shape(data.image_shape, data.num_classes)),
                          instance_order=order, seed=config.seed, **dataset_meta(data))
    if meta["stored_bytes"] > meta["budget_bytes"]:
        raise RuntimeError(f"internal error: {config.kind} stores {meta['stored_bytes']:,} bytes over its "
                           f"budget of {meta['budget_bytes']:,}")
    # a resumed run's wall time covers its last part only; matching_seconds counts every part
    seconds = max(time.time() - t0, extra.get("matching_seconds", 0.0))
    report = {**meta, "parts": container.parts(), "parts_bytes": container.parts_bytes(),
              "condense_seconds": round(seconds, 2),
              # this process's CPU time (every thread): what a busy machine does not inflate
              "cpu_seconds": round(time.process_time() - cpu0, 2),
              "peak_rss_mb": round(peak_rss_mb(), 1), "config": config.to_dict(), **extra}
    report.pop("instance_order")
    figures = report.get("pruning", {}).pop("figures", None)
    if "pruning" in report:
        meta["pruning"] = {key: v for key, v in report["pruning"].items() if key != "aum"}
    result = CondenseResult(container.cpu().eval(), meta, report, config)
    if out is not None and dist.is_main():  # replicas are identical: rank 0 writes
        write_run(result, data, Path(out), figures)
    return result


def check_resumable(config: CondenseConfig, out: str | Path, data: Dataset | None = None) -> None:
    """Fail now, before any work, if `out` holds a checkpoint that --resume cannot continue from
    (checkpoint.CheckpointError: unreadable, foreign, written under other settings, or -- given
    `data` -- holding tensors that do not fit the container these settings build)."""
    k = get(config.kind)
    if not k.matched:
        return
    over = config.prune.over_budget if config.prune.method != "none" else 0.0
    path = Path(out) / checkpoint.CHECKPOINT
    st = checkpoint.load(path, checkpoint.identity(config, over))
    if st is None or data is None:
        return
    built = k.build(data, sized_config(k, data, config), torch.Generator().manual_seed(config.seed), over_budget=over)
    want = {name: tuple(t.shape) for name, t in built.state_dict().items()}
    have = {name: tuple(t.shape) for name, t in st["container"].items()} if isinstance(st["container"], dict) else {}
    if want != have:
        raise checkpoint.CheckpointError(f"{path} holds tensors that do not fit this run's container; delete it, "
                                         "or run without --resume")


def _condense_matching(data: Dataset, cfg: CondenseConfig, kind: Kind, *, device: str, out, progress: bool,
                       resume: bool) -> tuple[Container, list[list[int]], dict]:
    """Build, warm-start and match a container; prune it back and order its prefixes if `cfg` says so."""
    pruning = cfg.prune.method != "none"
    over = cfg.prune.over_budget if pruning else 0.0
    sized = sized_config(kind, data, cfg)  # + the values' worth at cfg.precision (sized.values_ipc)
    container = stored_as(kind.build(data, sized, torch.Generator().manual_seed(cfg.seed), over_budget=over),
                          cfg, data)
    m = Matcher(container, data, cfg, device=device, out=out, over_budget=over, kind=kind)
    resumed = bool(resume and m.load_checkpoint())
    if resume and not resumed and dist.is_main():
        print(f"no checkpoint in {out}; starting from scratch", file=sys.stderr)
    warm = ({"steps": cfg.match.warm_start, "skipped": "resumed from a checkpoint"} if resumed else
            warm_start(m.container, data, cfg.match.warm_start, seed=cfg.seed, device=device,
                       compute_dtype=cfg.match.compute_dtype, targets=cfg.match.warm_targets,
                       lr_schedule=cfg.match.warm_lr_schedule, progress=progress and dist.is_main()))
    m.run(progress=progress)
    container, rss = m.container, peak_rss_mb()
    report = {"loss_curve": m.losses, "matching_seconds": round(m.seconds, 2), "resumed": resumed,
              "over_budget": over, "warm_start": warm, "world_size": dist.world_size(),
              "rank_peak_rss_mb": dist.gather_float(rss), "rank_matching_seconds": dist.gather_float(m.seconds),
              **m.report()}
    # pruning and prefix ordering never break a subset the multisize loss trained
    protect = max([t.trained_prefix() for t in m.terms] + [cfg.prune.protect])
    order = [list(range(container.instances_per_class)) for _ in range(data.num_classes)]
    if pruning and dist.is_main():  # pruning reads the whole train split: rank 0 alone
        target = kind.in_budget_instances(Shape(data.image_shape, data.num_classes), sized)
        protect = min(protect, target - 1)
        t0 = time.time()
        report["pruning"] = prune_container(container, target, data, replace(cfg.prune, protect=protect),
                                            seed=cfg.seed, device=device)
        report["pruning"]["seconds"] = round(time.time() - t0, 2)
        order = report["pruning"].pop("kept")
    if cfg.prefix_order == "herding" and dist.is_main():  # like pruning: rank 0 alone, it writes the file
        protect = protect if cfg.match.multisize else 0
        t0 = time.time()
        perm = herding_prefix_order(container, data, protect=protect, seed=cfg.seed, device=device,
                                    progress=progress)
        container.select_instances(perm)
        order = [[order[c][j] for j in perm[c].tolist()] for c in range(data.num_classes)]
        report["prefix_order"] = {"method": "herding", "protect": protect, "seconds": round(time.time() - t0, 2)}
    return container, order, report


def write_pruning_figures(pruning: dict, figures: dict, data: Dataset, out: Path) -> None:
    """aum.png (AUM distribution, the paper's Fig. 9) and pruned.png (lowest/highest AUM, Fig. 10)."""
    import numpy as np

    aum = np.asarray(pruning["aum"]["per_instance"]).ravel()
    histogram(aum, out / "aum.png", xlabel="AUM (area under the margin)",
              title=f"AUM of {len(aum)} generated images; {pruning['method']} pruning, beta={pruning['beta']}")
    (lo, ylo), (hi, yhi) = figures["lowest"], figures["highest"]
    k = int((ylo == 0).sum())
    # interleave per class: k lowest then k highest in one row
    x = torch.cat([torch.cat([lo[ylo == c], hi[yhi == c]]) for c in range(data.num_classes)])
    y = torch.arange(data.num_classes).repeat_interleave(2 * k)
    sample_grid(data.to_pixels(x), y, data.classes, out / "pruned.png", per_class=2 * k,
                title=f"per class: {k} lowest-AUM images (left), {k} highest-AUM images (right)")


RUN_FILES = (CONFIG_FILE, "samples.png", "loss.png", "aum.png", "pruned.png", "report.json")  # + the container


def write_run(result: CondenseResult, data: Dataset, out: Path, figures: dict | None = None) -> None:
    """Write the run's files without ever losing a finished run: everything is written into a
    staging folder inside `out` first (a full disk or a crash there leaves the previous run whole),
    then moved in by renames with the container last, so a run directory holding
    container.safetensors is always a finished run whose other files match it. A previous run's
    file the new run does not make (loss.png of another kind) is removed with it."""
    out.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(out)
    try:
        if result.config is not None:
            atomic_write_text(stage / CONFIG_FILE, json.dumps(result.config.to_dict(), indent=2))
        x, y = result.container.images(per_class=min(10, result.container.instances_per_class))
        sample_grid(data.to_pixels(x), y, data.classes, stage / "samples.png",
                    title=f"{result.meta['kind']} on {data.name}, {result.meta['budget_ipc']:g} IPC budget")
        curve = result.report.get("loss_curve")
        if curve:
            line_plot({"matching loss": (list(range(1, len(curve) + 1)), curve, None)}, stage / "loss.png",
                      xlabel="outer iteration", ylabel="mean gradient distance",
                      title=f"{result.meta['kind']} on {data.name}")
        if figures:
            write_pruning_figures(result.report["pruning"], figures, data, stage)
        atomic_write_text(stage / "report.json", json.dumps(result.report, indent=2))
        save_container(stage, result.container, result.meta)
        # renames only from here on: nothing left to fail for want of space
        (out / CONTAINER_FILE).unlink(missing_ok=True)
        for name in RUN_FILES:
            if (stage / name).is_file():
                os.replace(stage / name, out / name)
            else:
                (out / name).unlink(missing_ok=True)
        os.replace(stage / CONTAINER_FILE, out / CONTAINER_FILE)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
