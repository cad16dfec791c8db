"""Every kind x every storage precision x the image shapes users bring: torch and onnxruntime
agree at the fp32 tolerance.

The exporter lays tensors out as it likes (an HMN's instance memory was kept whole at 28 px and
flattened at 8 and 32 px), so the parity of a container depends on its shape as well as its kind:
the grid below covers digits' 1x8x8, MNIST's 1x28x28, CIFAR's 3x32x32, an odd 3x30x30 (one
decoder layer over 15x15 memories) and a non-square 1x20x12 (every kind but the HMN, whose
decoder needs square images and says so).
"""

import numpy as np
import pytest

from edgecond.budget import BudgetError
from edgecond.condense import condense
from edgecond.data import load_dataset
from edgecond.export import FP32_ATOL, export_onnx
from edgecond.kinds import KINDS, get

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 30, 30), (1, 20, 12)]
PRECISIONS = ("fp32", "fp16", "int8")
# no learning to speak of: what is measured is the layout of the stored values, not their quality
NO_SCHEDULE = {"match.outer": 1, "match.inner": 1, "match.net_steps": 1, "match.warm_start": 2,
               "match.real_batch": 8, "match.syn_batch": 8, "match.net_width": 8, "match.multisize": False,
               "prefix_order": "none", "eval.steps": 1}


def blobs_npz(path, shape, classes=2, per_class=48, seed=0):
    """A generated dataset of `shape` (C, H, W): a bright blob whose place depends on the class."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]

    def images(n, k):
        cy, cx = h * (k + 1) / (classes + 1), w * (classes - k) / (classes + 1)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.05 * h * w))
        x = blob[None, :, :, None] + rng.normal(0, 0.1, (n, h, w, c))
        return (np.clip(x, 0, 1) * 255).astype(np.uint8)

    def split(n):
        return np.concatenate([images(n, k) for k in range(classes)]), np.repeat(np.arange(classes), n)

    (xtr, ytr), (xte, yte) = split(per_class), split(per_class // 4)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    cache = {}

    def get_one(shape):
        if shape not in cache:
            path = blobs_npz(tmp_path_factory.mktemp("shapes") / "blobs.npz", shape)
            cache[shape] = load_dataset(f"npz:{path}")
        return cache[shape]
    return get_one


def shape_id(shape):
    return "x".join(map(str, shape))


# herding stores what random stores (a PixelContainer: the same graph at every precision), and its
# 300-step feature network would cost ~30 s a shape here; test_bytes exports it on digits
GRID_KINDS = [name for name in KINDS if name != "herding"]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", GRID_KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_onnxruntime_regenerates_every_kind_at_every_precision_and_shape(dataset, tmp_path, shape, kind, precision):
    data = dataset(shape)
    settings = {**(NO_SCHEDULE if get(kind).matched else {}), "precision": precision}
    if kind == "hmn" and shape[1] != shape[2]:
        with pytest.raises(BudgetError, match="square"):
            condense(data, kind, 10, settings=settings, progress=False)
        return
    res = condense(data, kind, 10, settings=settings, progress=False)
    assert res.container.precision == precision
    out = export_onnx(res.container, res.meta, tmp_path / "m.onnx", ort_format=precision == "int8")
    for path, f in out["files"].items():
        assert f["max_abs_error"] <= FP32_ATOL, path
    # and the device runtime reads it back: the container's own images, in its own shape
    from edgecond_device import Regenerator

    r = Regenerator(tmp_path / ("m.ort" if precision == "int8" else "m.onnx"))
    images, labels = r.generate(per_class=min(3, r.instances_per_class))
    ref, ref_labels = res.container.images(per_class=min(3, r.instances_per_class))
    assert images.shape[1:] == shape and np.array_equal(labels, ref_labels.numpy())
    assert np.abs(images - ref.numpy()).max() <= FP32_ATOL
