"""The `edgecond-device` command line (runs on the device: no torch)."""

from __future__ import annotations

import io
import json
import os
import secrets
import sys
from pathlib import Path

import click
import numpy as np

from . import __version__
from .errors import OneLineGroup
from .locking import OutputLocked, exclusive
from .names import safe_filename
from .pngio import encode_png, grid
from .runtime import ModelError, Regenerator
from .units import BYTES_PER_VALUE


def _atomic_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: a reader never sees half a file.
    Created with the mode an ordinary open() gives (the umask's), not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_exemplars(out: Path, fmt: str, r: Regenerator, pixels, images, labels) -> list[Path]:
    """Write the exemplars and grid.png into `out`; on any failure remove what this call wrote
    (and the folders it made), so a full disk leaves no partial set behind."""
    files: list[Path] = []
    made = [p for p in [out, *out.parents] if not p.exists()]
    try:
        if fmt == "npz":
            buf = io.BytesIO()
            np.savez(buf, pixels=pixels, images=images, labels=labels, classes=np.asarray(r.classes))
            files.append(out / "exemplars.npz")
            _atomic_bytes(files[-1], buf.getvalue())
        else:
            counters: dict[int, int] = {}
            for px, y in zip(pixels, labels):
                k = counters.get(int(y), 0)
                counters[int(y)] = k + 1
                folder = out / safe_filename(int(y), r.classes[int(y)])  # class names are data, never paths
                if not folder.exists():
                    made.append(folder)
                files.append(folder / f"{k:05d}.png")
                _atomic_bytes(files[-1], encode_png(px))
        files.append(out / "grid.png")
        _atomic_bytes(files[-1], encode_png(grid(pixels, labels, scale=max(1, 64 // r.image_shape[1]))))
        return files
    except BaseException:
        for f in files:
            f.unlink(missing_ok=True)
        for d in sorted(made, key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        raise


def _open(model: str, threads: int = 1, providers: tuple[str, ...] = ()) -> Regenerator:
    try:
        return Regenerator(model, threads=threads, providers=list(providers) or None)
    except ModelError as e:
        raise click.ClickException(str(e)) from e


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecond-device")
def main():
    """Regenerate training images from an edgecond model (.onnx or .ort) with onnxruntime alone.

    \b
      edgecond-device info model.onnx
      edgecond-device regenerate model.onnx --per-class 5 --out exemplars/ --format png
    """


def summary(r: Regenerator) -> dict:
    m = r.meta
    size = r.path.stat().st_size
    budget = m.get("budget_bytes")
    budget = budget.get("fp32") if isinstance(budget, dict) else budget  # format 1 kept a dict
    return {"path": str(r.path), "format": r.path.suffix.lstrip(".") or "onnx", "bytes": size,
            "budget_bytes": budget, "vs_budget": size / budget if budget else None, "kind": m.get("kind"),
            "classes": r.classes, "instances_per_class": r.instances_per_class, "image_shape": list(r.image_shape),
            "precision": m.get("precision", "fp32"), "stored_values": m.get("stored_floats"),
            "stored_value_bytes": (m["stored_bytes"] if isinstance(m.get("stored_bytes"), int) else
                                   m["stored_floats"] * BYTES_PER_VALUE[m.get("precision", "fp32")]
                                   if isinstance(m.get("stored_floats"), int) else None),
            "budget_ipc": m.get("budget_ipc"), "format_version": m.get("format_version"),
            "model_version": r.model_version, "outputs": r.outputs, "edgecond_version": m.get("edgecond_version"),
            "source_sha256": m.get("source_sha256")}


provider_option = click.option("--provider", "providers", multiple=True, metavar="NAME",
                               help="onnxruntime execution provider, in order of preference (repeatable; "
                                    "default CPUExecutionProvider), e.g. CUDAExecutionProvider.")


@main.command()
@click.argument("model", type=click.Path())
@provider_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info(model, providers, as_json):
    """Show what MODEL holds: classes, images per class, bytes against the budget, precision."""
    s = summary(_open(model, providers=providers))
    if as_json:
        click.echo(json.dumps(s))
        return
    for k, v in s.items():
        if k == "vs_budget" and v is not None:
            v = f"{v:.3f}"
        click.echo(f"{k:<20} {', '.join(map(str, v)) if isinstance(v, list) else v}")


@main.command()
@click.argument("model", type=click.Path())
@click.option("--per-class", type=int, default=None, help="Images per class: the first K of each (default: all).")
@click.option("--classes", default=None, help="Comma-separated class indices or names (default: all).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--format", "fmt", type=click.Choice(["npz", "png"]), default="npz", show_default=True,
              help="npz: exemplars.npz (uint8 pixels, float images, labels); png: one file per image + grid.png.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="onnxruntime intra-op threads.")
@provider_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (what was written).")
def regenerate(model, per_class, classes, out, fmt, batch_size, threads, providers, as_json):
    """Regenerate MODEL's images (the exemplars its container trains on) into OUT."""
    r = _open(model, threads, providers)
    wanted = None if classes is None else [c.strip() for c in classes.split(",") if c.strip()]
    if wanted == []:
        raise click.BadParameter("lists no class (leave --classes out for all of them)", param_hint="--classes")
    try:
        r.index_pairs(wanted, per_class)  # validate everything before writing anything
        pixels, labels = r.generate(wanted, per_class, batch_size=batch_size, output="pixels")  # from the graph
        images = r.generate(wanted, per_class, batch_size=batch_size)[0] if fmt == "npz" else None
    except ModelError as e:
        raise click.ClickException(str(e)) from e
    out = Path(out)
    try:
        with exclusive(out):  # one writer per output folder
            files = _write_exemplars(out, fmt, r, pixels, images, labels)
    except OutputLocked as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot write to {out}: {e.strerror or e}; nothing was left there") from None
    n_classes = len(set(labels.tolist()))
    if as_json:
        click.echo(json.dumps({"out": str(out), "format": fmt, "images": len(labels), "classes": n_classes,
                               "per_class": len(labels) // max(1, n_classes), "files": len(files) - 1,
                               "grid": str(out / "grid.png"), "model": summary(r)}))
    click.echo(f"wrote {len(labels)} images ({n_classes} classes x {len(labels) // max(1, n_classes)}) to {out} "
               f"[{fmt}], grid: {out / 'grid.png'}", err=True)


if __name__ == "__main__":
    sys.exit(main())
