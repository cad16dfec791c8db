"""The `edgecond-device` command line (runs on the device: no torch)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click
import numpy as np

from . import __version__
from .pngio import encode_png, grid
from .runtime import ModelError, Regenerator, to_uint8


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open(model: str, threads: int = 1) -> Regenerator:
    try:
        return Regenerator(model, threads=threads)
    except ModelError as e:
        raise click.ClickException(str(e)) from e


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecond-device")
def main():
    """Regenerate training images from an edgecond ONNX model with onnxruntime alone.

    \b
      edgecond-device info model.onnx
      edgecond-device regenerate model.onnx --per-class 5 --out exemplars/ --format png
    """


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info(model, as_json):
    """Show what MODEL holds: classes, images per class, budget, precision."""
    r = _open(model)
    m = r.meta
    summary = {"path": str(model), "bytes": Path(model).stat().st_size, "kind": m.get("kind"),
               "classes": r.classes, "instances_per_class": r.instances_per_class,
               "image_shape": list(r.image_shape), "precision": m.get("precision"),
               "budget_ipc": m.get("budget_ipc"), "budget_floats": m.get("budget_floats"),
               "stored_floats": m.get("stored_floats"), "format_version": m.get("format_version"),
               "edgecond_version": m.get("edgecond_version"), "source_sha256": m.get("source_sha256")}
    if as_json:
        click.echo(json.dumps(summary))
        return
    for k, v in summary.items():
        click.echo(f"{k:<20} {', '.join(map(str, v)) if isinstance(v, list) else v}")


@main.command()
@click.argument("model", type=click.Path())
@click.option("--per-class", type=int, default=None, help="Images per class: the first K of each (default: all).")
@click.option("--classes", default=None, help="Comma-separated class indices or names (default: all).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--format", "fmt", type=click.Choice(["npz", "png"]), default="npz", show_default=True,
              help="npz: exemplars.npz (uint8 pixels, float images, labels); png: one file per image + grid.png.")
@click.option("--batch-size", type=int, default=1024, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime intra-op threads.")
def regenerate(model, per_class, classes, out, fmt, batch_size, threads):
    """Regenerate MODEL's images (the exemplars its container trains on) into OUT."""
    r = _open(model, threads)
    wanted = None if classes is None else [c.strip() for c in classes.split(",") if c.strip()]
    try:
        r.index_pairs(wanted, per_class)  # validate everything before writing anything
        images, labels = r.generate(wanted, per_class, batch_size=batch_size)
    except ModelError as e:
        raise click.ClickException(str(e)) from e
    pixels = to_uint8(images, r.mean, r.std)
    out = Path(out)
    names = np.asarray(r.classes)
    if fmt == "npz":
        import io

        buf = io.BytesIO()
        np.savez(buf, pixels=pixels, images=images, labels=labels, classes=names)
        _atomic_bytes(out / "exemplars.npz", buf.getvalue())
    else:
        counters: dict[int, int] = {}
        for px, y in zip(pixels, labels):
            k = counters.get(int(y), 0)
            counters[int(y)] = k + 1
            _atomic_bytes(out / f"{int(y):03d}_{r.classes[int(y)]}" / f"{k:05d}.png", encode_png(px))
    _atomic_bytes(out / "grid.png", encode_png(grid(pixels, labels, scale=max(1, 64 // r.image_shape[1]))))
    click.echo(f"wrote {len(labels)} images ({len(set(labels.tolist()))} classes x "
               f"{len(labels) // max(1, len(set(labels.tolist())))}) to {out} [{fmt}], grid: {out / 'grid.png'}",
               err=True)


if __name__ == "__main__":
    sys.exit(main())
