"""Figures people would rather look at than read: sample grids and accuracy curves."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from edgecond_device.names import printable  # noqa: E402

from .io import atomic_write  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with warnings.catch_warnings():  # a class name in a script the font lacks is drawn as boxes, not an error
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path


def sample_grid(pixels: torch.Tensor, labels: torch.Tensor, class_names: list[str], path: Path,
                per_class: int = 10, title: str = "") -> Path:
    """One row per class, the first `per_class` images of each; pixels in [0, 1], NCHW."""
    classes = sorted(set(labels.tolist()))
    cols = min(per_class, max(int((labels == c).sum()) for c in classes))
    fig, axes = plt.subplots(len(classes), cols, figsize=(cols * 0.9 + 1.2, len(classes) * 0.9 + 0.4),
                             squeeze=False)
    for r, c in enumerate(classes):
        imgs = pixels[labels == c][:cols]
        for j in range(cols):
            ax = axes[r][j]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(imgs):
                im = imgs[j].permute(1, 2, 0).numpy()
                ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray" if im.shape[-1] == 1 else None,
                          vmin=0, vmax=1)
            if j == 0:
                ax.set_ylabel(printable(class_names[c], 24), rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def line_plot(series: dict[str, tuple[list, list, list | None]], path: Path, xlabel: str, ylabel: str,
              title: str = "", logx: bool = False) -> Path:
    """series: name -> (x, y, yerr or None)."""
    fig, ax = plt.subplots(figsize=(6.8, 3.6))
    for name, (x, y, err) in series.items():
        if err is None:
            ax.plot(x, y, marker="o", ms=3, label=name)
        else:
            ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if all(float(v).is_integer() for _, (x, _, _) in series.items() for v in x):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # experiences, subset sizes
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the plot, never over lines
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def histogram(values: np.ndarray, path: Path, xlabel: str, title: str = "", marks: dict | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.hist(values, bins=40, color="#4477aa")
    for name, v in (marks or {}).items():
        ax.axvline(v, color="#cc3311", ls="--", lw=1)
        ax.text(v, ax.get_ylim()[1] * 0.95, name, fontsize=7, rotation=90, va="top")
    ax.set_xlabel(xlabel), ax.set_ylabel("images")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def bar_plot(groups: dict[str, dict[str, tuple[float, float]]], path: Path, ylabel: str, title: str = "") -> Path:
    """Grouped bars with error bars: groups -> {bar name: (mean, err)}; a bar name keeps its colour
    in every group, and a group draws only the bars it has."""
    names = list(dict.fromkeys(n for bars in groups.values() for n in bars))
    width = 0.8 / len(names)
    fig, axes = plt.subplots(1, len(groups), figsize=(2.2 + 1.6 * len(groups), 3.4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (group, bars) in zip(axes[0], groups.items()):
        for i, name in enumerate(names):
            if name in bars:
                mean, err = bars[name]
                ax.bar(i * width, mean, width * 0.9, yerr=err, capsize=2, color=colours(i % 10), label=name)
        ax.set_xticks([]), ax.set_title(group, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        lo, hi = min(m - e for m, e in bars.values()), max(m + e for m, e in bars.values())
        pad = 0.15 * (hi - lo) + 0.5  # zoomed to the bars: the differences are what is read
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
    axes[0][0].set_ylabel(ylabel)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend([handles[n] for n in names if n in handles], [n for n in names if n in handles], fontsize=8,
               loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
