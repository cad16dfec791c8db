"""Container files: safetensors tensors + one JSON metadata record. Loading never runs code.

The JSON (safetensors' string metadata, key ``edgecond``) carries the format version, the
container kind and config, class names, normalisation, image shape, the budget and the
per-class instance order (the original instance ids in prefix order), plus free-form
provenance (dataset, seed, pruning...). Writes are atomic: a temporary file in the same
directory, then a rename.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import torch
from edgecond_device.records import parse_record
from edgecond_device.units import BYTES_PER_VALUE, PRECISIONS
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
        for attempt in range(5):
            d.mkdir(parents=True, exist_ok=True)
            try:
                fd, probe = tempfile.mkstemp(dir=d, prefix=".edgecond-write-test.")
                break
            except FileNotFoundError:
                # another process probing the same new folder removed it between our mkdir and our
                # write (two runs started into one --out: the lock then refuses the second)
                if attempt == 4:
                    raise
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


def staging_dir(directory: Path) -> Path:
    """A new empty folder inside `directory` named like atomic_write's temporaries, so a writer
    killed before it moved its files out leaves something remove_stale_temporaries clears."""
    for _ in range(100):
        d = Path(directory) / f".staging.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise OutputError(f"cannot create a staging folder in {directory}")


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
                if p.is_dir() and not p.is_symlink():  # a staging folder (staging_dir)
                    shutil.rmtree(p)
                else:
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
        "budget_bytes": int(budget_bytes) if budget_bytes is not None else BYTES_PER_VALUE["fp32"] * floats,
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
    meta, why = parse_record(raw)
    if why:
        raise ContainerFileError(f"{p} has {why}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ContainerFileError(f"{p} has format version {meta['format_version']}; this edgecond "
                                 f"reads up to {FORMAT_VERSION}: upgrade edgecond")
    # files from before byte budgets: fp32 containers whose budget was float32 values
    meta.setdefault("precision", "fp32")
    if _number(meta.get("budget_floats")):
        meta.setdefault("budget_bytes", BYTES_PER_VALUE["fp32"] * meta["budget_floats"])
    why = _meta_problem(meta)
    if why:
        raise ContainerFileError(f"{p}: metadata field {why}; the file was damaged or edited")
    return meta


def _number(v, low: float = 0.0) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > low


def _whole(v, low: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _meta_problem(meta: dict) -> str | None:
    """What is wrong with a container's metadata record, or None: the checks a file from another
    source must pass before anything is built from it."""
    from .data import MAX_CLASSES
    from .kinds import KINDS

    classes, shape = meta.get("classes"), meta.get("image_shape")
    if not isinstance(meta.get("kind"), str) or meta["kind"] not in KINDS:
        return f"'kind' ({str(meta.get('kind'))[:40]!r}) is no registered container kind"
    if not isinstance(meta.get("config"), dict):
        return "'config' is not a JSON object"
    if not isinstance(classes, list) or not 0 < len(classes) <= MAX_CLASSES or \
            not all(isinstance(c, str) for c in classes):
        return "'classes' is not a list of 1 to 100,000 names"
    if not isinstance(shape, list) or len(shape) != 3 or not all(_whole(v) and v <= 65536 for v in shape):
        return "'image_shape' is not three positive integers"
    for key in ("mean", "std"):
        v = meta.get(key)
        if not isinstance(v, list) or len(v) != shape[0] or \
                not all(_number(x, -math.inf if key == "mean" else 0.0) for x in v):
            return f"{key!r} is not {shape[0]} finite numbers (one per channel{', positive' if key == 'std' else ''})"
    if not _number(meta.get("budget_floats")) or not _whole(meta.get("budget_bytes")):
        return "'budget_floats' or 'budget_bytes' is not a positive number"
    if "budget_ipc" in meta and not _number(meta["budget_ipc"]):
        return "'budget_ipc' is not a positive number"
    if meta.get("precision") not in PRECISIONS:
        return f"'precision' is {str(meta.get('precision'))[:20]!r}, not one of {', '.join(PRECISIONS)}"
    k = meta.get("instances_per_class")
    if k is not None and not _whole(k):
        return "'instances_per_class' is not a positive integer"
    order = meta.get("instance_order")
    if order is not None and (not isinstance(order, list) or len(order) != len(classes) or
                              not all(isinstance(o, list) and all(_whole(i, 0) for i in o) for o in order)):
        return "'instance_order' is not a list of instance indices per class"
    config = meta["config"]
    if config.get("num_classes", len(classes)) != len(classes) or config.get("image_shape", shape) != shape:
        return "'config' describes other classes or another image shape than the record"
    return None


def load_container(path: str | os.PathLike) -> tuple[Container, dict]:
    """The container a file holds and its metadata. The metadata's structure is checked against
    the file's tensors before anything is allocated (built on torch's meta device first), so an
    edited file is one ContainerFileError, never a traceback or a huge allocation."""
    p = resolve(path)
    meta = read_meta(p)

    def build():
        try:
            return build_from_file(meta["kind"], meta["config"])
        except (TypeError, ValueError, KeyError) as e:  # an unknown kind or config key, a bad value
            raise ContainerFileError(f"{p}: its metadata describes no container this edgecond can build "
                                     f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                                     "the file was damaged, edited or written by another version") from None

    with torch.device("meta"):
        shapes = {k: tuple(t.shape) for k, t in build().state_dict().items()}
    with safe_open(str(p), framework="pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        if stored != shapes:
            differ = sorted(k for k in set(stored) | set(shapes) if stored.get(k) != shapes.get(k))
            raise ContainerFileError(f"{p}: its metadata describes other tensors than it holds ({differ[0]}: "
                                     f"{shapes.get(differ[0])} vs {stored.get(differ[0])}); the file was damaged "
                                     "or edited")
        state = {k: f.get_tensor(k) for k in f.keys()}
    container = build()
    container.load_state_dict(state)
    container.precision = meta["precision"]
    container.pixel_stats = (list(meta["mean"]), list(meta["std"]))
    container.eval()
    return container, meta
