"""Container -> ONNX: one graph from (class_index, instance_index) to the training images.

The graph's inputs are two int64 vectors of any (equal, >= 1) length; its outputs are
`images`, the float32 images (N, C, H, W) in the normalised space that `evaluate` trains on,
and `pixels`, the same images as uint8 (N, H, W, C) -- memories and weights are initialisers
gathered inside the graph; onnxruntime computes only the outputs asked for.

Export goes through torch.onnx's maintained dynamo path, then:
* metadata (`edgecond` key, compact JSON; ModelProto.model_version = the format version):
  format and edgecond versions, kind, class names, image shape, normalisation, instances per
  class, stored values, precision, budget bytes and a hash of the source container;
* precision fp16 stores every float initialiser in half precision behind a Cast; int8 stores
  weights and memories (>= 2-D initialisers) as int8 with per-channel scales behind
  DequantizeLinear (weight-only), image-like tensors (pixel containers' images, HaBa's bases)
  as uint8 pixel levels, the rest as fp32 -- quantise.py's rounding, so a container condensed at
  that precision exports exactly (parity at the fp32 tolerance); by default a container exports
  at the precision it was condensed at;
* `ort_format` adds the ORT-format model for onnxruntime's minimal/mobile builds (without
  constant folding, so each precision keeps its size) and its required-operators list;
* parity: onnxruntime's output on every instance must match torch within `atol`
  (1e-5 for fp32) for every file, or nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from edgecond_device.locking import OutputLocked, exclusive
from edgecond_device.units import PRECISIONS
from onnx import TensorProto, helper, numpy_helper

from . import __version__
from .containers import Container
from .io import OutputError, atomic_write, atomic_write_text, remove_stale_temporaries, resolve
from .quantise import int8_codes, pixel_levels, vector_like

ONNX_FORMAT_VERSION = 2  # 2: a uint8 `pixels` output beside `images`; compact metadata
FP32_ATOL = 1e-5
OPSET_MIN = 18  # torch.onnx's dynamo exporter writes opset 18 and later


class ExportError(RuntimeError):
    """The exported model failed a check; nothing was written."""


# the pixel output's normalisation constants: graph constants, not container storage, so they
# stay float32 whatever the precision (half-precision std would move pixels off by one)
PIXEL_CONSTANTS = ("pixel_mean", "pixel_std")


class _Graph(torch.nn.Module):
    """(class_index, instance_index) -> (images, pixels): the normalised float images `evaluate`
    trains on, and the same images as uint8 NHWC pixels (to_uint8's formula, in the graph, so a
    consumer in any language needs no normalisation maths)."""

    def __init__(self, container: Container, mean, std):
        super().__init__()
        self.container = container
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, class_index: torch.Tensor, instance_index: torch.Tensor):
        images = self.container._generate(class_index, instance_index)
        pixels = ((images * self.pixel_std + self.pixel_mean) * 255.0 + 0.5).clamp(0.0, 255.0).floor()
        return images, pixels.to(torch.uint8).permute(0, 2, 3, 1)


def _torch_export(container: Container, mean, std, opset: int | None = None) -> onnx.ModelProto:
    container = container.cpu().eval()
    batch = torch.export.Dim("batch")
    example = (torch.tensor([0, 1], dtype=torch.long), torch.tensor([0, 0], dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(_Graph(container, mean, std), example, input_names=["class_index", "instance_index"],
                                 output_names=["images", "pixels"], dynamo=True, verbose=False,
                                 dynamic_shapes={"class_index": {0: batch}, "instance_index": {0: batch}},
                                 **({"opset_version": opset} if opset is not None else {}))
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
        out = convert(init.name, arr) if arr.dtype == np.float32 and init.name not in PIXEL_CONSTANTS else None
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


def compact_names(model: onnx.ModelProto) -> None:
    """Short value names (t0, t1, ...) and no node names: a small container's model is mostly
    its graph, and the exporter's names ("container.decoder.0.weight", "node_Reshape_26")
    appear in every initialiser and every node that uses it. Inputs and outputs keep theirs."""
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]


def to_fp16(model: onnx.ModelProto) -> None:
    def convert(name, arr):
        half = numpy_helper.from_array(arr.astype(np.float16), f"{name}__fp16")
        return [half], [helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT, name=f"{name}__cast")]
    _replace_initialisers(model, convert)


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as the container stores it: its values in the container's own layout, how they
    are stored (`Container.storage_precision`), the int8 channel axis (`Container.storage_axis`)
    and whether each slice t[0], t[1], ... has scales of its own (`Container.stored_per_slice`)."""
    name: str
    values: np.ndarray
    precision: str
    axis: int
    per_slice: bool = False

    def pieces(self) -> list["StoredTensor"]:
        if not self.per_slice:
            return [self]
        return [StoredTensor(f"{self.name}[{j}]", v, self.precision, self.axis) for j, v in enumerate(self.values)]


def stored_tensors(container: Container, traced: Container, precision: str) -> list[StoredTensor]:
    """Every floating-point state tensor of `traced` (the values as stored) with its storage at `precision`."""
    return [StoredTensor(name, t.numpy(), container.storage_precision(name, precision), container.storage_axis(name),
                         container.stored_per_slice(name))
            for name, t in traced.state_dict().items() if t.is_floating_point()]


def _source(name: str, arr: np.ndarray, stored: list[StoredTensor]) -> StoredTensor | None:
    """The stored tensor (or slice of one) a graph initialiser holds. The exporter keeps a module's
    tensors under their state names but may reshape them (a flattened gather table, a vector as
    (n, 1, 1)), keep them whole where the container flattens them, or split them where the
    container indexes them by a constant, so a tensor is found by holding the same values in the
    same order -- by name first where several do."""
    candidates = [st for whole in stored for st in ([whole] + (whole.pieces() if whole.per_slice else []))]
    same = [st for st in candidates if st.values.size == arr.size and np.array_equal(st.values.ravel(), arr.ravel())]
    named = [st for st in same if name.removeprefix("container.") == st.name]
    return (named or same or [None])[0]


def _reshaped(name: str, produced: str, shape: tuple[int, ...]):
    """Nodes giving `name` the graph's `shape` from `produced` (the container's layout)."""
    target = numpy_helper.from_array(np.asarray(shape, dtype=np.int64), f"{name}__shape")
    return [target], [helper.make_node("Reshape", [produced, target.name], [name])]


def _as_pixels(name: str, st: StoredTensor, mean, std):
    """A stored image tensor as uint8 pixel levels in the container's layout, back to normalised
    values in the graph in quantise.quantise's order: level / 255, minus the mean, over the std
    (one of each per channel, the layout's third axis from last)."""
    arr = st.values
    levels = pixel_levels(torch.from_numpy(arr.copy()), mean, std).numpy()
    per_channel = [1] * (arr.ndim - 3) + [len(mean), 1, 1]
    consts = [numpy_helper.from_array(np.asarray(v, dtype=np.float32).reshape(shape), f"{name}__{tag}")
              for tag, v, shape in (("levels", 255.0, []), ("mean", mean, per_channel), ("std", std, per_channel))]
    q = numpy_helper.from_array(levels, f"{name}__u8")
    nodes = [helper.make_node("Cast", [q.name], [f"{name}__f"], to=TensorProto.FLOAT),
             helper.make_node("Div", [f"{name}__f", consts[0].name], [f"{name}__unit"]),
             helper.make_node("Sub", [f"{name}__unit", consts[1].name], [f"{name}__centred"]),
             helper.make_node("Div", [f"{name}__centred", consts[2].name], [f"{name}__stored"])]
    return [q, *consts], nodes


def _as_int8(name: str, st: StoredTensor):
    """int8 codes with one scale per channel along the container's storage axis -- the codes
    quantise.int8_codes gives the container, so matching trained exactly these values. A tensor
    stored slice by slice is dequantised a slice at a time and concatenated back."""
    if st.per_slice:
        inits, nodes, parts = [], [], []
        for j, piece in enumerate(st.pieces()):
            piece = StoredTensor(piece.name, piece.values[None], piece.precision, piece.axis + 1)
            more_inits, more_nodes = _as_int8(f"{name}__s{j}", piece)
            inits, nodes, parts = inits + more_inits, nodes + more_nodes, parts + [more_nodes[-1].output[0]]
        return inits, nodes + [helper.make_node("Concat", parts, [f"{name}__stored"], axis=0)]
    q, scale = (t.numpy() for t in int8_codes(torch.from_numpy(st.values.copy()), st.axis))
    qi = numpy_helper.from_array(q, f"{name}__q")
    si = numpy_helper.from_array(scale.astype(np.float32), f"{name}__scale")
    zi = numpy_helper.from_array(np.zeros(q.shape[st.axis], dtype=np.int8), f"{name}__zero")
    node = helper.make_node("DequantizeLinear", [qi.name, si.name, zi.name], [f"{name}__stored"], axis=st.axis)
    return [qi, si, zi], [node]


def to_int8(model: onnx.ModelProto, stored: list[StoredTensor], mean=None, std=None) -> None:
    """Store each initialiser as its container stores it at int8 (`stored`, from `stored_tensors`):
    weights and memories as int8 codes with per-channel scales, image-like tensors as uint8 pixel
    levels of (`mean`, `std`), vectors as fp32.

    The codes are computed in the container's layout and dequantised there, then reshaped to the
    graph's: the exporter's layout may differ (a memory kept whole that the container reads per
    channel along its third axis), and rounding along the graph's axis instead would store other
    values than the ones matching trained. A multi-dimensional initialiser that is no stored
    tensor cannot be sized or rounded as the container is: refused."""
    def convert(name, arr):
        st = _source(name, arr, stored)
        if st is None:
            if vector_like(arr.shape):  # the exporter's own constants (eps, shapes, ones)
                return None
            raise ExportError(f"graph initialiser {name} {tuple(arr.shape)} is no tensor of the container; "
                              "cannot store it at int8")
        if st.precision == "uint8":
            inits, nodes = _as_pixels(name, st, mean, std)
        elif st.precision == "int8" and not vector_like(st.values.shape[st.per_slice:]):
            inits, nodes = _as_int8(name, st)
        else:
            return None
        if tuple(arr.shape) == tuple(st.values.shape):
            nodes[-1].output[0] = name
            return inits, nodes
        more_inits, more_nodes = _reshaped(name, nodes[-1].output[0], arr.shape)
        return inits + more_inits, nodes + more_nodes
    _replace_initialisers(model, convert)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_metadata(meta: dict, container: Container, precision: str, source: Path | None) -> dict:
    """What the device needs, compactly: the container's provenance (pruning report, instance
    order) stays in the container file, which `source_sha256` names."""
    keys = ("kind", "classes", "image_shape", "mean", "std", "budget_ipc", "budget_floats", "dataset", "seed")
    return {"format_version": ONNX_FORMAT_VERSION, "edgecond_version": __version__,
            **{key: meta[key] for key in keys if key in meta},
            "instances_per_class": container.instances_per_class, "stored_floats": container.stored_floats(),
            "precision": precision, "budget_bytes": meta["budget_bytes"],
            "stored_bytes": container.stored_bytes(precision),
            "source_sha256": file_sha256(source) if source is not None else None}


def as_stored(container: Container) -> Container:
    """A copy holding the values as stored, read at fp32 -- what the graph is traced from."""
    import copy

    out = copy.deepcopy(container).cpu().eval()
    out.commit_storage()
    out.precision = "fp32"
    return out


def session(model_bytes: bytes, precision: str, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_quant_qdq", "1")  # as the device runtime: int8 stays weight-only
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def parity_error(container: Container, model_bytes: bytes, precision: str, batch: int = 2048) -> float:
    """Max |onnxruntime - torch| over every instance of every class."""
    sess = session(model_bytes, precision)
    worst = 0.0
    with torch.no_grad():
        for c, i, ref in container.iter_batches(batch_size=batch):
            out = sess.run(["images"], {"class_index": c.numpy(), "instance_index": i.numpy()})[0]
            worst = max(worst, float(np.abs(out - ref.numpy()).max()))
    return worst


def to_ort_format(model_bytes: bytes) -> bytes:
    """The ORT-format model for onnxruntime's minimal and mobile builds.

    Optimised at the basic level (standard ONNX operators only, so any build runs it) with
    constant folding off: folding would turn the half-precision and int8 initialisers behind
    their Cast/DequantizeLinear back into float32 and the file back into fp32's size."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "model.onnx", Path(d) / "model.ort"
        src.write_bytes(model_bytes)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(dst)
        so.add_session_config_entry("session.save_model_format", "ORT")
        so.add_session_config_entry("session.disable_quant_qdq", "1")
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"], disabled_optimizers=["ConstantFolding"])
        return dst.read_bytes()


def required_operators(ort_bytes: bytes, name: str) -> str:
    """The operator list a reduced onnxruntime build needs for this model (onnxruntime's own
    tool, the `--include_ops_by_config` file of its build script)."""
    import logging

    from onnxruntime.tools.ort_format_model import create_config_from_models

    log = logging.getLogger("ort_format_model.utils")  # it logs each file it writes at INFO
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as d:
            model, config = Path(d) / name, Path(d) / "required_operators.config"
            model.write_bytes(ort_bytes)
            create_config_from_models([model], config, enable_type_reduction=False)
            return config.read_text().replace(str(model), name)
    finally:
        log.setLevel(level)


def _precision_error(precision: str) -> str | None:
    return None if precision in PRECISIONS else f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"


def export_onnx(container: Container, meta: dict, out: str | os.PathLike, precision: str | None = None,
                source: Path | None = None, atol: float | None = None, opset: int | None = None,
                ort_format: bool = False) -> dict:
    """Export, check (onnx.checker + parity), stamp metadata, write atomically; returns a summary.

    `meta`: the container's metadata record (`io.container_meta`, as `io.load_container` returns
    it). `precision`: how the model stores the values; None: as the container was condensed. At its
    own precision (or fp32) a container exports exactly and parity holds at the fp32 tolerance;
    another precision rounds after the fact and is checked at that precision's tolerance.
    With `ort_format`, also OUT.ort (checked for parity the same way) and
    OUT.required_operators.config. Every file is checked before any is written."""
    precision = container.precision if precision is None else precision
    err_msg = _precision_error(precision)
    if err_msg:
        raise ValueError(err_msg)
    if opset is not None and not OPSET_MIN <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is outside what the exporter writes ({OPSET_MIN} to "
                         f"{onnx.defs.onnx_opset_version()}); leave --opset out for its default")
    traced = as_stored(container)
    model = _torch_export(traced, meta["mean"], meta["std"], opset)
    wrote = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and wrote != opset:  # the exporter falls back silently
        raise ValueError(f"the exporter cannot write opset {opset} (it wrote {wrote}); leave --opset out for "
                         "its default")
    if precision == "fp16":
        to_fp16(model)
    elif precision == "int8":
        to_int8(model, stored_tensors(container, traced, precision), meta["mean"], meta["std"])
    compact_names(model)
    md = onnx_metadata(meta, container, precision, source)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {"edgecond": json.dumps(md, separators=(",", ":"))})
    model.producer_name, model.producer_version = "edgecond", __version__
    model.model_version = ONNX_FORMAT_VERSION
    onnx.checker.check_model(model, full_check=True)
    files = {".onnx": model.SerializeToString()}
    if ort_format:
        files[".ort"] = to_ort_format(files[".onnx"])
    exact = precision in ("fp32", container.precision)
    limit = atol if atol is not None else FP32_ATOL if exact else {"fp16": 5e-2, "int8": 5e-1}[precision]
    try:
        errors = {ext: parity_error(container, data, precision) for ext, data in files.items()}
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a model it cannot run
        import onnxruntime

        raise ExportError(f"onnxruntime {onnxruntime.__version__} cannot run the exported model "
                          f"({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})"
                          f"{'; try a lower --opset' if opset is not None else ''}; nothing written") from None
    for ext, err in errors.items():
        if not err <= limit:
            raise ExportError(f"onnxruntime ({ext}) differs from torch by {err:.3g} (> {limit:g}) for {precision}; "
                              "nothing written")
    out = Path(out)
    paths = {".onnx": out}
    if ort_format:
        paths[".ort"] = out.with_suffix(".ort")
        paths[".config"] = out.with_suffix(".required_operators.config")
        ops = required_operators(files[".ort"], paths[".ort"].name)
    try:
        with exclusive(out, own_dir=False):  # one writer per model file
            remove_stale_temporaries(out.parent)  # an earlier export killed mid-write
            for ext, data in files.items():
                atomic_write(paths[ext], lambda tmp, data=data: Path(tmp).write_bytes(data))
            if ort_format:
                atomic_write_text(paths[".config"], ops)
    except (OutputLocked, OutputError):
        raise
    except OSError as e:  # the lock itself could not be made
        raise OutputError(f"cannot write to {out.parent}: {e.strerror or e}") from None
    budget = meta["budget_bytes"]
    return {"path": str(out), "bytes": len(files[".onnx"]), "precision": precision,
            "max_abs_error": errors[".onnx"], "budget_bytes": budget, "stored_bytes": md["stored_bytes"],
            "instances_per_class": container.instances_per_class, "stored_values": container.stored_floats(),
            "opset": wrote,
            "files": {str(paths[ext]): {"bytes": len(data), "vs_budget": len(data) / budget,
                                        "max_abs_error": errors[ext]} for ext, data in files.items()},
            **({"required_operators": str(paths[".config"])} if ort_format else {})}


def export_container(path: str | os.PathLike, out: str | os.PathLike, precision: str | None = None,
                     opset: int | None = None, ort_format: bool = False) -> dict:
    from .io import load_container

    src = resolve(path)
    container, meta = load_container(src)
    return export_onnx(container, meta, out, precision=precision, source=src, opset=opset, ort_format=ort_format)
