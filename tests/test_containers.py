"""Registry-driven container tests: every kind round-trips, fits its budget, loads safely."""

import json

import pytest
import torch
from safetensors.torch import save_file

from edgecond.condense import condense
from edgecond.io import ContainerFileError, load_container, read_meta, save_container

CORESETS = ["random", "herding"]


@pytest.fixture(scope="module")
def coresets(digits, tmp_path_factory):
    out = {}
    for kind in CORESETS:
        d = tmp_path_factory.mktemp(kind)
        out[kind] = (condense(digits, kind, 3, seed=1, out=d, progress=False), d)
    return out


@pytest.mark.parametrize("kind", CORESETS)
def test_coreset_budget_exact(coresets, digits, kind):
    res, _ = coresets[kind]
    c, h, w = digits.image_shape
    assert res.container.stored_floats() == 3 * digits.num_classes * c * h * w
    assert res.meta["budget_floats"] == res.container.stored_floats()


@pytest.mark.parametrize("kind", CORESETS)
def test_coreset_images_are_real_training_images(coresets, digits, kind):
    res, _ = coresets[kind]
    x, y = res.container.images()
    for c in range(digits.num_classes):
        real = digits.class_images(c)
        for img, idx in zip(x[y == c], res.meta["instance_order"][c]):
            assert torch.equal(img, real[idx])


@pytest.mark.parametrize("kind", CORESETS)
def test_round_trip(coresets, kind):
    res, d = coresets[kind]
    loaded, meta = load_container(d)  # the run directory works as well as the file
    assert meta["kind"] == kind and meta["classes"] == [str(i) for i in range(10)]
    assert meta["instance_order"] == res.meta["instance_order"]
    assert meta["format_version"] == 1 and len(meta["mean"]) == 1
    xa, ya = res.container.images()
    xb, yb = loaded.images()
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert (d / "samples.png").stat().st_size > 1000
    report = json.loads((d / "report.json").read_text())
    assert report["stored_floats"] == res.container.stored_floats()


def test_herding_order_prefers_the_mean():
    from edgecond.coreset import herding_order

    f = torch.tensor([[0.0, 0.0], [10.0, 0.0], [-10.0, 0.0], [0.1, 0.0]])
    # mean (0.025, 0): row 0 alone is nearest; then row 3 keeps the pair mean at (0.05, 0);
    # then row 2 (-10) pulls the triple mean to -3.3, nearer than row 1's +3.37
    assert herding_order(f, 3).tolist() == [0, 3, 2]
    assert herding_order(f, 4).tolist() == [0, 3, 2, 1]  # every row once


def test_refuses_bad_files(tmp_path, coresets):
    not_st = tmp_path / "x.safetensors"
    not_st.write_bytes(b"\x00" * 64)
    with pytest.raises(ContainerFileError, match="not a safetensors"):
        load_container(not_st)
    plain = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(plain))
    with pytest.raises(ContainerFileError, match="without edgecond metadata"):
        load_container(plain)
    with pytest.raises(ContainerFileError, match="no container"):
        load_container(tmp_path / "missing")
    res, _ = coresets["random"]
    future = save_container(tmp_path / "future", res.container, {**res.meta, "format_version": 99})
    with pytest.raises(ContainerFileError, match="format version 99"):
        read_meta(future)


def test_coreset_refuses_bad_ipc(digits):
    assert condense(digits, "random", 2.5, progress=False).container.instances_per_class == 2  # whole images that fit
    with pytest.raises(ValueError, match="less than one"):
        condense(digits, "random", 0.5, progress=False)
    with pytest.raises(ValueError, match="only"):
        condense(digits, "random", 500, progress=False)
