"""Container -> ONNX: one graph from (class_index, instance_index) to the training images.

The graph's inputs are two int64 vectors of any (equal) length; its output is the float32
images (N, C, H, W) in the normalised space that `evaluate` trains on -- memories and
weights are initialisers gathered inside the graph. The device turns outputs into pixels
with the mean/std in the model's metadata.

Export goes through torch.onnx's maintained dynamo path, then:
* metadata (`edgecond` key, JSON): format and edgecond versions, class names, image shape,
  normalisation, instances per class and their prefix order, budget, provenance and a hash
  of the source container;
* `--fp16` stores every float initialiser in half precision behind a Cast;
* `--int8` stores weights and memories (>= 2-D initialisers) as int8 with per-channel
  scales behind DequantizeLinear (weight-only), the rest as fp32;
* parity: onnxruntime's output on every instance must match torch within `atol`
  (1e-5 for fp32) or nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from . import __version__
from .containers import Container
from .io import atomic_write, remove_stale_temporaries, resolve

ONNX_FORMAT_VERSION = 1
FP32_ATOL = 1e-5


class ExportError(RuntimeError):
    """The exported model failed a check; nothing was written."""


class _Graph(torch.nn.Module):
    def __init__(self, container: Container):
        super().__init__()
        self.container = container

    def forward(self, class_index: torch.Tensor, instance_index: torch.Tensor) -> torch.Tensor:
        return self.container._generate(class_index, instance_index)


def _torch_export(container: Container) -> onnx.ModelProto:
    container = container.cpu().eval()
    batch = torch.export.Dim("batch")
    example = (torch.tensor([0, 1], dtype=torch.long), torch.tensor([0, 0], dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(_Graph(container), example, input_names=["class_index", "instance_index"],
                                 output_names=["images"], dynamo=True, verbose=False,
                                 dynamic_shapes={"class_index": {0: batch}, "instance_index": {0: batch}})
    prog.optimize()
    model = prog.model_proto
    # drop the exporter's per-node provenance (stack traces) and intermediate shape info: they
    # would cost more bytes than a small container stores
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    return model


def _replace_initialisers(model: onnx.ModelProto, convert) -> None:
    """convert(name, array) -> (new initialisers, nodes) or None to keep; nodes must output `name`."""
    graph = model.graph
    keep, new_nodes = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        out = convert(init.name, arr) if arr.dtype == np.float32 else None
        if out is None:
            keep.append(init)
            continue
        inits, nodes = out
        keep.extend(inits)
        new_nodes.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)


def to_fp16(model: onnx.ModelProto) -> None:
    def convert(name, arr):
        half = numpy_helper.from_array(arr.astype(np.float16), f"{name}__fp16")
        return [half], [helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT, name=f"{name}__cast")]
    _replace_initialisers(model, convert)


def to_int8(model: onnx.ModelProto) -> None:
    def convert(name, arr):
        if arr.ndim < 2:
            return None
        # per channel along axis 1: a ConvTranspose weight's output channels, a memory's channels
        # (axis 0 of a memory would be one scale per stored instance)
        moved = np.moveaxis(arr, 1, 0).reshape(arr.shape[1], -1)
        scale = (np.abs(moved).max(axis=1) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0
        shape = [1, -1] + [1] * (arr.ndim - 2)
        q = np.clip(np.round(arr / scale.reshape(shape)), -127, 127).astype(np.int8)
        qi = numpy_helper.from_array(q, f"{name}__q")
        si = numpy_helper.from_array(scale, f"{name}__scale")
        zi = numpy_helper.from_array(np.zeros(arr.shape[1], dtype=np.int8), f"{name}__zero")
        node = helper.make_node("DequantizeLinear", [qi.name, si.name, zi.name], [name], axis=1, name=f"{name}__dq")
        return [qi, si, zi], [node]
    _replace_initialisers(model, convert)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_metadata(meta: dict, container: Container, precision: str, source: Path | None) -> dict:
    keys = ("kind", "classes", "image_shape", "mean", "std", "budget_ipc", "budget_floats",
            "dataset", "seed", "pruning", "multisize")
    k = container.instances_per_class
    order = meta.get("instance_order")
    if order is None or all(o == list(range(k)) for o in order):
        order = "identity"  # instance i of a class is its i-th image: the common case, stored compactly
    return {"format_version": ONNX_FORMAT_VERSION, "edgecond_version": __version__,
            **{key: meta[key] for key in keys if key in meta}, "instance_order": order,
            "instances_per_class": container.instances_per_class, "stored_floats": container.stored_floats(),
            "precision": precision,
            "budget_bytes": {"fp32": 4 * meta["budget_floats"]},
            "source_sha256": file_sha256(source) if source is not None else None}


def session(model_bytes: bytes, precision: str, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if precision == "int8":
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def parity_error(container: Container, model_bytes: bytes, precision: str, batch: int = 2048) -> float:
    """Max |onnxruntime - torch| over every instance of every class."""
    sess = session(model_bytes, precision)
    worst = 0.0
    with torch.no_grad():
        for c, i, ref in container.iter_batches(batch_size=batch):
            out = sess.run(None, {"class_index": c.numpy(), "instance_index": i.numpy()})[0]
            worst = max(worst, float(np.abs(out - ref.numpy()).max()))
    return worst


def export_onnx(container: Container, meta: dict, out: str | os.PathLike, precision: str = "fp32",
                source: Path | None = None, atol: float | None = None) -> dict:
    """Export, check (onnx.checker + parity), stamp metadata, write atomically; returns a summary."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    model = _torch_export(container)
    if precision == "fp16":
        to_fp16(model)
    elif precision == "int8":
        to_int8(model)
    md = onnx_metadata(meta, container, precision, source)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {"edgecond": json.dumps(md)})
    model.producer_name, model.producer_version = "edgecond", __version__
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    err = parity_error(container, data, precision)
    limit = atol if atol is not None else {"fp32": FP32_ATOL, "fp16": 5e-2, "int8": 5e-1}[precision]
    if not err <= limit:
        raise ExportError(f"onnxruntime differs from torch by {err:.3g} (> {limit:g}) for {precision}; "
                          "nothing written")
    out = Path(out)
    remove_stale_temporaries(out.parent)  # an earlier export killed mid-write
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return {"path": str(out), "bytes": len(data), "precision": precision, "max_abs_error": err,
            "budget_bytes": 4 * meta["budget_floats"], "instances_per_class": container.instances_per_class}


def export_container(path: str | os.PathLike, out: str | os.PathLike, precision: str = "fp32") -> dict:
    from .io import load_container

    src = resolve(path)
    container, meta = load_container(src)
    return export_onnx(container, meta, out, precision=precision, source=src)


