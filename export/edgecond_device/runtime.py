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

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

SUPPORTED_FORMAT = 1


class ModelError(ValueError):
    """The model file or a request to it is not usable; the message says why."""


def read_metadata(path: str | os.PathLike) -> dict:
    """The `edgecond` metadata of an ONNX model, validated; raises ModelError."""
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"no such model file: {p}")
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several types for bad files
        raise ModelError(f"{p} is not a loadable ONNX model: {str(e).splitlines()[0][:200]}") from e
    raw = sess.get_modelmeta().custom_metadata_map.get("edgecond")
    if raw is None:
        raise ModelError(f"{p} is an ONNX model without edgecond metadata (export it with `edgecond export`)")
    meta = json.loads(raw)
    if meta.get("format_version", 0) > SUPPORTED_FORMAT:
        raise ModelError(f"{p} has format version {meta['format_version']}; this edgecond-device reads up to "
                         f"{SUPPORTED_FORMAT}: upgrade edgecond-device")
    return meta


class Regenerator:
    """An exported container, ready to regenerate images on the device."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.path = Path(path)
        self.threads = int(threads)
        self.meta = read_metadata(self.path)
        self._session = None

    # onnxruntime sessions cannot be pickled: keep the path, reopen lazily
    def __getstate__(self):
        return {"path": self.path, "threads": self.threads, "meta": self.meta, "_session": None}

    @property
    def session(self):
        if self._session is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.log_severity_level = 3
            if self.meta.get("precision") == "int8":
                so.add_session_config_entry("session.disable_quant_qdq", "1")
            self._session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
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
                    raise ModelError(f"class {c!r} is not in this model; it has {', '.join(self.classes)}")
                out.append(self.classes.index(c))
                continue
            if isinstance(c, bool) or not isinstance(c, (int, np.integer, str)):
                raise ModelError(f"class {c!r} must be an int index or a class name")
            i = int(c)
            if not 0 <= i < self.num_classes:
                raise ModelError(f"class {i} is not in this model (0..{self.num_classes - 1})")
            out.append(i)
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

    def run(self, class_index: np.ndarray, instance_index: np.ndarray) -> np.ndarray:
        """Images for explicit (class, instance) pairs; indices are validated here, not in the graph."""
        c = np.asarray(class_index)
        i = np.asarray(instance_index)
        if c.ndim != 1 or c.shape != i.shape or not (np.issubdtype(c.dtype, np.integer) and np.issubdtype(i.dtype, np.integer)):
            raise ModelError("class_index and instance_index must be 1-D integer arrays of equal length")
        if len(c) and (c.min() < 0 or c.max() >= self.num_classes or i.min() < 0 or i.max() >= self.instances_per_class):
            raise ModelError(f"index out of range: classes 0..{self.num_classes - 1}, "
                             f"instances 0..{self.instances_per_class - 1}")
        return self.session.run(None, {"class_index": c.astype(np.int64), "instance_index": i.astype(np.int64)})[0]

    def iter_batches(self, classes=None, per_class=None, batch_size: int = 1024) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ModelError(f"batch_size must be a positive int, got {batch_size!r}")
        c, i = self.index_pairs(classes, per_class)
        for s in range(0, len(c), batch_size):
            yield self.run(c[s:s + batch_size], i[s:s + batch_size]), c[s:s + batch_size]

    def generate(self, classes=None, per_class=None, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """All images of the first `per_class` instances of `classes`, class-major, with labels."""
        parts = list(self.iter_batches(classes, per_class, batch_size))
        if not parts:
            c, h, w = self.image_shape
            return np.zeros((0, c, h, w), np.float32), np.zeros(0, np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def to_uint8(images: np.ndarray, mean, std) -> np.ndarray:
    """Normalised float images (N, C, H, W) -> uint8 pixels (N, H, W, C)."""
    mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    px = np.clip((images * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return px.transpose(0, 2, 3, 1)
