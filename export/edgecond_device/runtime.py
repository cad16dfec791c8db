"""Regenerate training images from an edgecond ONNX model: numpy + onnxruntime, no torch.

    from edgecond_device import Regenerator, to_uint8
    r = Regenerator("model.onnx", threads=1)
    images, labels = r.generate(per_class=5)          # float32 (N, C, H, W), int64 (N,)
    pixels = to_uint8(images, r.mean, r.std)          # uint8 (N, H, W, C)

Instance i of a class is its i-th image in the container's prefix order, so asking for k per
class returns the container's k-per-class subset (the multisize invariant). Generation
streams in batches (`iter_batches`) so memory stays bounded by the batch size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .names import listed, printable
from .records import parse_record
from .units import BYTES_PER_VALUE, PRECISIONS

SUPPORTED_FORMAT = 2  # 1: images only; 2: + a uint8 `pixels` output
OUTPUTS = ("images", "pixels")


class ModelError(ValueError):
    """The model file or a request to it is not usable; the message says why."""


# kinds whose graph maps every instance index to an image (HaBa enumerates basis x hallucinator
# pairs, and an index past the last pair still selects a basis): their instance count has no
# upper bound in the graph to check
UNBOUNDED_INSTANCES = {"haba"}


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("edgecond-device needs an onnxruntime build: pip install 'edgecond-device[cpu]' "
                         "(or onnxruntime-gpu, onnxruntime-openvino, ... for other hardware)") from None
    return onnxruntime


def _session(path: Path, threads: int = 1, providers=None, session_options=None):
    """One onnxruntime session: `providers` and `session_options` are passed through (CPU and a
    quiet, `threads`-thread session by default)."""
    ort = _onnxruntime()
    so = session_options
    if so is None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.log_severity_level = 3
    # int8 models keep their weights behind DequantizeLinear: stop onnxruntime from fusing them into
    # integer kernels, which would not compute what the parity check measured (no effect on others)
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    missing = [pv for pv in providers or () if pv not in ort.get_available_providers()]
    if missing:  # onnxruntime would fall back to the CPU with a warning a user may never see
        raise ModelError(f"execution provider {printable(missing[0])!r} is not in this onnxruntime build; it has "
                         f"{listed(ort.get_available_providers())}")
    try:
        return ort.InferenceSession(str(path), so, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several types for bad files
        raise ModelError(f"{path} is not a loadable ONNX model: {str(e).splitlines()[0][:200]}") from None


def _metadata(sess, p: Path) -> dict:
    """The `edgecond` metadata record of an open session, its fields checked for type and range."""
    raw = sess.get_modelmeta().custom_metadata_map.get("edgecond")
    if raw is None:
        raise ModelError(f"{p} is an ONNX model without edgecond metadata (export it with `edgecond export`)")
    meta, why = parse_record(raw)
    if why:
        raise ModelError(f"{p} has {why}")
    if meta.get("format_version", 0) > SUPPORTED_FORMAT:
        raise ModelError(f"{p} has format version {meta['format_version']}; this edgecond-device reads up to "
                         f"{SUPPORTED_FORMAT}: upgrade edgecond-device")

    def bad(field, why):
        return ModelError(f"{p}: metadata field {field!r} {why}; the file was damaged or edited: export it again")

    classes, shape, k = meta.get("classes"), meta.get("image_shape"), meta.get("instances_per_class")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "is not a non-empty list of names")
    if not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise bad("image_shape", "is not three positive integers")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise bad("instances_per_class", "is not a positive integer")
    for key in ("mean", "std"):
        v = meta.get(key)
        if not isinstance(v, list) or len(v) != shape[0] or not all(isinstance(x, (int, float)) for x in v):
            raise bad(key, f"is not {shape[0]} numbers (one per channel)")
    if not isinstance(meta.get("precision", "fp32"), str) or meta.get("precision", "fp32") not in PRECISIONS:
        raise bad("precision", f"is {printable(str(meta.get('precision')), 20)!r}, not one of {', '.join(PRECISIONS)}")
    if not isinstance(meta.get("kind"), str):
        raise bad("kind", "is not a name")
    for key in ("stored_floats", "stored_bytes", "budget_bytes", "budget_floats"):
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            if not (key == "budget_bytes" and isinstance(v, dict)):  # format 1 kept a dict per precision
                raise bad(key, "is not a non-negative integer")
    v = meta.get("budget_ipc")
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
        raise bad("budget_ipc", "is not a positive number")
    return meta


def _runs(sess, c: int, i: int) -> bool:
    quiet = _onnxruntime().RunOptions()
    quiet.log_severity_level = 4  # a refused probe is an expected answer, not an error to print
    try:
        sess.run(["images"], {"class_index": np.array([c], np.int64), "instance_index": np.array([i], np.int64)}, quiet)
        return True
    except Exception:  # noqa: BLE001 - onnxruntime's INVALID_ARGUMENT for an index past a memory
        return False


def check_graph(sess, meta: dict, p: Path) -> None:
    """Refuse a model whose metadata disagrees with its graph: the graph is the truth.

    Probed with onnxruntime alone, kind-agnostically: the output's image shape; the last claimed
    (class, instance) must generate; one class past the claim must not (the memories are indexed
    by Gather, which rejects an index past its tensor on the CPU provider); one instance past
    it must not either, except for kinds whose graph accepts any instance index
    (UNBOUNDED_INSTANCES). The file must hold the claimed values at the claimed precision's
    bytes (an fp32 claim on an fp16 file cannot fit; the reverse is not visible through
    onnxruntime, which does not show initialiser types). What the graph cannot show -- which
    class is which name -- stays the metadata's word.
    """
    n, k, shape = len(meta["classes"]), int(meta["instances_per_class"]), list(meta["image_shape"])
    outputs = {o.name: o for o in sess.get_outputs()}
    if "images" not in outputs:
        raise ModelError(f"{p}: the graph has no `images` output; it is not an edgecond model: export it again")
    out = outputs["images"].shape[1:]
    if all(isinstance(v, int) for v in out) and list(out) != shape:
        raise ModelError(f"{p}: metadata says images of shape {tuple(shape)} but the graph outputs {tuple(out)}; "
                         f"the file was edited or mixed up: export it again")
    if not _runs(sess, n - 1, k - 1):
        raise ModelError(f"{p}: metadata says {n} classes x {k} instances but the graph cannot generate class "
                         f"{n - 1}, instance {k - 1}; the file was edited or mixed up: export it again")
    # the upper bounds rest on Gather rejecting an index past its tensor, which the CPU provider
    # checks; accelerator kernels need not, so there the probe would prove nothing
    bounds_checked = sess.get_providers()[0] == "CPUExecutionProvider"
    if bounds_checked and _runs(sess, n, 0):
        raise ModelError(f"{p}: metadata lists {n} classes but the graph holds more; the file was edited or "
                         f"mixed up: export it again")
    if bounds_checked and meta.get("kind") not in UNBOUNDED_INSTANCES and _runs(sess, n - 1, k):
        raise ModelError(f"{p}: metadata says {k} instances per class but the graph holds more; the file was "
                         f"edited or mixed up: export it again")
    stored = meta.get("stored_floats")
    need = int(stored) * BYTES_PER_VALUE[meta.get("precision", "fp32")] if isinstance(stored, int) else 0
    if isinstance(meta.get("stored_bytes"), int):  # counted at export, int8 scales included
        need = max(need, int(meta["stored_bytes"]))
    if p.is_file() and p.stat().st_size < need:
        raise ModelError(f"{p}: metadata says {stored:,} values in {meta.get('precision')} ({need:,} bytes) but the "
                         f"file has {p.stat().st_size:,} bytes; the file was edited or mixed up: export it again")


def read_metadata(path: str | os.PathLike) -> dict:
    """The `edgecond` metadata of an ONNX model, validated against its graph; raises ModelError."""
    return _open(path)[0]


def _open(path: str | os.PathLike, threads: int = 1, providers=None, session_options=None) -> tuple[dict, object]:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"no such model file: {p}")
    sess = _session(p, threads, providers, session_options)
    meta = _metadata(sess, p)
    check_graph(sess, meta, p)
    return meta, sess


class Regenerator:
    """An exported container, ready to regenerate images on the device.

    Opening it builds one onnxruntime session and checks the model's metadata against its graph
    (`check_graph`), so a damaged or edited model is refused before it generates anything."""

    def __init__(self, path: str | os.PathLike, threads: int = 1, providers=None, session_options=None):
        self.path = Path(path)
        self.threads = int(threads)
        self.providers = providers
        self.meta, self._session = _open(self.path, self.threads, providers, session_options)
        self.outputs = [o.name for o in self._session.get_outputs()]
        self.model_version = self._session.get_modelmeta().version

    # onnxruntime sessions cannot be pickled: keep the path, reopen lazily (with default options)
    def __getstate__(self):
        return {**self.__dict__, "_session": None}

    @property
    def session(self):
        if self._session is None:
            self._session = _session(self.path, self.threads, self.providers)
        return self._session

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def instances_per_class(self) -> int:
        return int(self.meta["instances_per_class"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image_shape"])  # type: ignore[return-value]

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.meta["mean"], dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.meta["std"], dtype=np.float32)

    # -- requests -----------------------------------------------------------------------
    def class_indices(self, classes: Sequence[int | str] | None) -> list[int]:
        """Class indices from indices or names; raises ModelError for unknown ones."""
        if classes is None:
            return list(range(self.num_classes))
        if isinstance(classes, (str, bytes, int, np.integer)):
            raise ModelError(f"classes must be a sequence of class indices or names, got {classes!r}")
        out = []
        for c in classes:
            if isinstance(c, str) and not c.lstrip("-").isdigit():
                if c not in self.classes:
                    raise ModelError(f"class {printable(c)!r} is not in this model; it has {listed(self.classes)}")
                out.append(self.classes.index(c))
                continue
            if isinstance(c, bool) or not isinstance(c, (int, np.integer, str)):
                raise ModelError(f"class {c!r} must be an int index or a class name")
            i = int(c)
            if not 0 <= i < self.num_classes:
                raise ModelError(f"class {i} is not in this model (0..{self.num_classes - 1})")
            out.append(i)
        twice = sorted({i for i in out if out.count(i) > 1})
        if twice:
            raise ModelError(f"classes lists class {twice[0]} ({printable(self.classes[twice[0]])!r}) more than once")
        return out

    def _per_class(self, per_class: int | None) -> int:
        if per_class is None:
            return self.instances_per_class
        if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)):
            raise ModelError(f"per_class must be an int, got {per_class!r}")
        if per_class < 1:
            raise ModelError(f"per_class must be >= 1, got {per_class}")
        if per_class > self.instances_per_class:
            raise ModelError(f"asked for {per_class} images per class but this model holds "
                             f"{self.instances_per_class} per class")
        return int(per_class)

    def index_pairs(self, classes=None, per_class=None) -> tuple[np.ndarray, np.ndarray]:
        cls = np.asarray(self.class_indices(classes), dtype=np.int64)
        k = self._per_class(per_class)
        return np.repeat(cls, k), np.tile(np.arange(k, dtype=np.int64), len(cls))

    def run(self, class_index, instance_index, output: str = "images") -> np.ndarray:
        """Images for explicit (class, instance) pairs (any integer dtype, any length, 0 included);
        indices are validated here, not in the graph. `output="pixels"`: uint8 (N, H, W, C)."""
        if output not in OUTPUTS:
            raise ModelError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        c = np.asarray(class_index)
        i = np.asarray(instance_index)
        c, i = (c.astype(np.int64) if c.size == 0 else c), (i.astype(np.int64) if i.size == 0 else i)  # [] is float64
        if c.ndim != 1 or c.shape != i.shape or not (np.issubdtype(c.dtype, np.integer) and np.issubdtype(i.dtype, np.integer)):
            raise ModelError("class_index and instance_index must be 1-D integer arrays of equal length")
        ch, h, w = self.image_shape
        if len(c) == 0:  # the graph needs at least one pair
            return (np.zeros((0, h, w, ch), np.uint8) if output == "pixels" else np.zeros((0, ch, h, w), np.float32))
        if c.min() < 0 or c.max() >= self.num_classes or i.min() < 0 or i.max() >= self.instances_per_class:
            raise ModelError(f"index out of range: classes 0..{self.num_classes - 1}, "
                             f"instances 0..{self.instances_per_class - 1}")
        feed = {"class_index": c.astype(np.int64), "instance_index": i.astype(np.int64)}
        if output == "pixels" and "pixels" not in self.outputs:  # a format-1 model: the same formula here
            return to_uint8(self.session.run(["images"], feed)[0], self.mean, self.std)
        return self.session.run([output], feed)[0]

    def iter_batches(self, classes=None, per_class=None, batch_size: int = 1024,
                     output: str = "images") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ModelError(f"batch_size must be a positive int, got {batch_size!r}")
        c, i = self.index_pairs(classes, per_class)
        for s in range(0, len(c), batch_size):
            yield self.run(c[s:s + batch_size], i[s:s + batch_size], output), c[s:s + batch_size]

    def generate(self, classes=None, per_class=None, batch_size: int = 1024,
                 output: str = "images") -> tuple[np.ndarray, np.ndarray]:
        """All images of the first `per_class` instances of `classes`, class-major, with labels."""
        parts = list(self.iter_batches(classes, per_class, batch_size, output))
        if not parts:
            return self.run(np.zeros(0, np.int64), np.zeros(0, np.int64), output), np.zeros(0, np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def to_uint8(images: np.ndarray, mean, std) -> np.ndarray:
    """Normalised float images (N, C, H, W) -> uint8 pixels (N, H, W, C)."""
    mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    px = np.clip((images * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return px.transpose(0, 2, 3, 1)
