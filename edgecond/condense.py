"""`condense`: turn a dataset into a container file, a report and a picture.

One entry point for every container kind, so the CLI, the benchmarks and the continual
harness all make containers the same way.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from .containers import Container
from .coreset import herding_coreset, random_coreset
from .data import Dataset
from .io import atomic_write_text, container_meta, save_container
from .plots import histogram, line_plot, sample_grid

CORESET_KINDS = ("random", "herding")


@dataclass
class CondenseResult:
    container: Container
    meta: dict
    report: dict = field(default_factory=dict)


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM where there is one: ru_maxrss keeps the
    parent's high-water mark across fork + exec, so a small child of a big parent looks big."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dataset_meta(data: Dataset) -> dict:
    return {"dataset": data.name, "data_seed": data.meta.get("seed", 0),
            "val_fraction": data.meta.get("val_fraction", 0.1),
            "dataset_classes": data.meta.get("classes_selected")}


def condense(data: Dataset, kind: str, ipc: float, *, seed: int = 0, device: str = "cpu",
             out: str | Path | None = None, progress: bool = True, **options) -> CondenseResult:
    """Build a container of `kind` within `ipc` images-per-class worth of floats."""
    t0 = time.time()
    extra: dict = {}
    if kind in CORESET_KINDS:
        if float(ipc) != int(ipc):
            raise ValueError(f"a real-image coreset needs a whole number of images per class, got ipc={ipc}")
        if kind == "random":
            container, order = random_coreset(data, int(ipc), seed=seed)
        else:
            container, order = herding_coreset(data, int(ipc), seed=seed, device=device, progress=progress)
        extra["instance_source"] = "train-split indices per class"
    else:
        from .matching import condense_matching  # heavy path; imported on demand

        container, order, extra = condense_matching(data, kind, ipc, seed=seed, device=device, out=out,
                                                    progress=progress, **options)
    meta = container_meta(container, classes=data.classes, mean=data.mean, std=data.std, budget_ipc=ipc,
                          instance_order=order, seed=seed, **dataset_meta(data))
    if meta["stored_floats"] > meta["budget_floats"]:
        raise RuntimeError(f"internal error: {kind} stores {meta['stored_floats']} floats over its "
                           f"budget of {meta['budget_floats']}")
    # a resumed run's wall time covers its last part only; matching_seconds counts every part
    seconds = max(time.time() - t0, extra.get("matching_seconds", 0.0))
    report = {**meta, "parts": container.parts(), "condense_seconds": round(seconds, 2),
              "peak_rss_mb": round(peak_rss_mb(), 1), **extra}
    report.pop("instance_order")
    figures = report.get("pruning", {}).pop("figures", None)
    if "pruning" in report:
        meta["pruning"] = {k: v for k, v in report["pruning"].items() if k not in ("aum",)}
    result = CondenseResult(container.cpu().eval(), meta, report)
    from . import distributed

    if out is not None and distributed.is_main():  # replicas are identical: rank 0 writes
        write_run(result, data, Path(out))
        if figures:
            write_pruning_figures(report["pruning"], figures, data, Path(out))
    return result


def write_pruning_figures(pruning: dict, figures: dict, data: Dataset, out: Path) -> None:
    """aum.png (AUM distribution, the paper's Fig. 9) and pruned.png (lowest/highest AUM, Fig. 10)."""
    import numpy as np
    import torch

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


def write_run(result: CondenseResult, data: Dataset, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_container(out, result.container, result.meta)
    x, y = result.container.images(per_class=min(10, result.container.instances_per_class))
    sample_grid(data.to_pixels(x), y, data.classes, out / "samples.png",
                title=f"{result.meta['kind']} on {data.name}, {result.meta['budget_ipc']:g} IPC budget")
    curve = result.report.get("loss_curve")
    if curve:
        line_plot({"matching loss": (list(range(1, len(curve) + 1)), curve, None)}, out / "loss.png",
                  xlabel="outer iteration", ylabel="mean gradient distance",
                  title=f"{result.meta['kind']} on {data.name}")
    atomic_write_text(out / "report.json", json.dumps(result.report, indent=2))

