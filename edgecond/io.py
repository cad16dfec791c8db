"""Container files: safetensors tensors + one JSON metadata record. Loading never runs code.

The JSON (safetensors' string metadata, key ``edgecond``) carries the format version, the
container kind and config, class names, normalisation, image shape, the budget and the
per-class instance order (the original instance ids in prefix order), plus free-form
provenance (dataset, seed, pruning...). Writes are atomic: a temporary file in the same
directory, then a rename.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import __version__, faults
from .containers import Container
from .kinds import build_from_file

FORMAT_VERSION = 1
CONTAINER_FILE = "container.safetensors"


class ContainerFileError(ValueError):
    """A file is not a readable edgecond container."""


def resolve(path: str | os.PathLike) -> Path:
    """A run directory or the container file itself -> the container file."""
    p = Path(path)
    if p.is_dir():
        p = p / CONTAINER_FILE
    if not p.is_file():
        raise ContainerFileError(f"no container at {path} (expected a run directory holding "
                                 f"{CONTAINER_FILE}, or the file itself)")
    return p


class OutputError(OSError):
    """An output path that cannot be written."""


def check_writable(directory: str | os.PathLike) -> Path:
    """Prove a file can be written in `directory` (OutputError says why not), leaving nothing behind:
    folders made for the probe are removed again.

    Called before long work starts, so an unwritable --out fails in a second, not after the run."""
    d = Path(directory).absolute()
    made = [p for p in [d, *d.parents] if not p.exists()]
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".edgecond-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write to {d}: {e.strerror or e}") from None
    finally:
        for p in made:  # deepest first
            try:
                p.rmdir()
            except OSError:
                pass
    return d


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def _temporary(path: Path) -> str:
    """A new empty file beside `path`, created with the mode an ordinary open() would give (umask
    respected; mkstemp's 0600 would keep a model from the user or container it is handed to)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(tmp)
        except FileExistsError:
            continue
    raise OutputError(f"cannot create a temporary file beside {path}")


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then atomically move tmp_path to path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        write(tmp)
        faults.during_write(path.name, tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # writers (safetensors, torch) may have recreated it as 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of writers that died before their rename (killed, power cut).

    Only atomic_write's own names (`.NAME.PID.HEX.tmp`) whose process is gone are touched, so a
    live writer sharing the folder is left alone. Returns what was removed."""
    d = Path(directory)
    removed = []
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        m = TEMPORARY.match(p.name)
        if m and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    def w(tmp):
        Path(tmp).write_text(text)
    atomic_write(Path(path), w)


def container_meta(container: Container, *, classes: list[str], mean, std, budget_ipc: float,
                   budget_bytes: int | None = None, instance_order: list[list[int]] | None = None, **extra) -> dict:
    """The metadata record. The budget is bytes (`budget_bytes`; by default those of `budget_ipc`
    float32 images per class); `budget_floats` is the same budget counted in float32 values."""
    c, h, w = container.image_shape
    k = container.instances_per_class
    floats = int(round(budget_ipc * c * h * w * container.num_classes))
    return {
        "format_version": FORMAT_VERSION,
        "edgecond_version": __version__,
        "kind": container.kind,
        "config": container.config(),
        "classes": list(classes),
        "image_shape": [c, h, w],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "budget_ipc": float(budget_ipc),
        "budget_floats": floats,
        "budget_bytes": int(budget_bytes) if budget_bytes is not None else 4 * floats,
        "precision": container.precision,
        "stored_floats": container.stored_floats(),
        "stored_bytes": container.stored_bytes(),
        "instances_per_class": k,
        "instance_order": instance_order or [list(range(k)) for _ in range(container.num_classes)],
        **extra,
    }


def save_container(path: str | os.PathLike, container: Container, meta: dict) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / CONTAINER_FILE
    meta = {**meta, "stored_floats": container.stored_floats(), "stored_bytes": container.stored_bytes(),
            "precision": container.precision, "instances_per_class": container.instances_per_class,
            "config": container.config()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in container.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"edgecond": json.dumps(meta)}))
    return path


def read_meta(path: str | os.PathLike) -> dict:
    p = resolve(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("edgecond")
    except Exception as e:  # noqa: BLE001 - anything unreadable is not a container
        raise ContainerFileError(f"{p} is not a safetensors file: {e}") from e
    if raw is None:
        raise ContainerFileError(f"{p} is a safetensors file without edgecond metadata")
    meta = json.loads(raw)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ContainerFileError(f"{p} has format version {meta['format_version']}; this edgecond "
                                 f"reads up to {FORMAT_VERSION}: upgrade edgecond")
    # files from before byte budgets: fp32 containers whose budget was float32 values
    meta.setdefault("precision", "fp32")
    meta.setdefault("budget_bytes", 4 * meta["budget_floats"])
    return meta


def load_container(path: str | os.PathLike) -> tuple[Container, dict]:
    p = resolve(path)
    meta = read_meta(p)
    container = build_from_file(meta["kind"], meta["config"])
    with safe_open(str(p), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    container.load_state_dict(state)
    container.precision = meta["precision"]
    container.pixel_stats = (list(meta["mean"]), list(meta["std"]))
    container.eval()
    return container, meta
