"""Storage precisions: the values a container is stored as, their bytes, and that the exported
graph reads exactly those values."""

import copy

import numpy as np
import pytest
import torch

from edgecond.quantise import fake_quantise, int8_codes, pixel_levels, quantise, tensor_bytes
from helpers import build


@pytest.mark.parametrize("precision", ["fp16", "int8", "uint8"])
def test_fake_quantise_is_the_stored_value_forward_and_identity_backward(precision):
    t = (torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_(True)
    stats = {"mean": [0.2, 0.5, 0.4], "std": [0.3, 0.2, 0.25]} if precision == "uint8" else {}
    y = fake_quantise(t, precision, **stats)
    assert torch.equal(y.detach(), quantise(t, precision, **stats))
    assert not torch.equal(y.detach(), t.detach())  # something was rounded
    (y * torch.arange(y.numel()).view_as(y)).sum().backward()
    assert torch.equal(t.grad, torch.arange(t.numel()).view_as(t).float())


def test_rounding_errors_are_within_each_precisions_step():
    torch.manual_seed(0)
    t = torch.randn(6, 8, 3, 3) * torch.logspace(-2, 1, 8).view(1, -1, 1, 1)  # channels of very different scale
    q, scale = int8_codes(t)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    err = (quantise(t, "int8") - t).abs().movedim(1, 0).reshape(8, -1).amax(dim=1)
    assert torch.all(err <= scale / 2 + 1e-7)  # per channel: half a step of its own scale
    assert torch.allclose(quantise(t, "fp16"), t, rtol=2 ** -11, atol=2 ** -24)  # fp16's subnormals: an absolute step
    for v in (torch.randn(7), torch.randn(7, 1, 1)):
        assert torch.equal(quantise(v, "int8"), v)  # vectors stay fp32, however shaped


def test_uint8_levels_are_the_device_runtimes_pixels():
    from edgecond_device import to_uint8

    mean, std = [0.3, 0.5, 0.45], [0.25, 0.2, 0.3]
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 1.5
    np.testing.assert_array_equal(pixel_levels(x, mean, std).permute(0, 2, 3, 1).numpy(),
                                  to_uint8(x.numpy(), mean, std))
    again = quantise(quantise(x, "uint8", mean, std), "uint8", mean, std)
    np.testing.assert_allclose(again.numpy(), quantise(x, "uint8", mean, std).numpy(), atol=1e-6)


def test_bytes_count_what_is_stored():
    w, b = torch.zeros(10, 6, 3, 3), torch.zeros(6)
    assert tensor_bytes(w, "fp32") == 4 * 540 and tensor_bytes(w, "fp16") == 2 * 540
    assert tensor_bytes(w, "int8") == 540 + 6 * (4 + 1)  # codes, then a scale and a zero point per channel
    assert tensor_bytes(b, "int8") == 4 * 6  # vectors stay fp32
    assert tensor_bytes(w, "uint8") == 540


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_the_exported_graph_reads_exactly_the_stored_values(digits, tmp_path, precision):
    """onnxruntime on the fp16/int8 model equals torch on the container's quantised values at the
    fp32 tolerance: what matching trains through fake_quantise is what the device regenerates."""
    from edgecond.export import FP32_ATOL, export_onnx
    from edgecond.io import container_meta
    from edgecond_device import Regenerator

    cont = build("hmn", digits, 10).eval()
    with torch.no_grad():
        for p in cont.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    meta = container_meta(cont, classes=digits.classes, mean=digits.mean, std=digits.std, budget_ipc=10)
    export_onnx(cont, meta, tmp_path / "m.onnx", precision=precision)
    stored = copy.deepcopy(cont)
    stored.load_state_dict({k: quantise(v, precision, axis=cont.storage_axis(k)) if v.is_floating_point() else v
                            for k, v in cont.state_dict().items()})
    want, _ = stored.images()
    got, _ = Regenerator(tmp_path / "m.onnx").generate()
    np.testing.assert_allclose(got, want.numpy(), atol=FP32_ATOL, rtol=0)
    unquantised, _ = cont.images()
    assert np.abs(got - unquantised.detach().numpy()).max() > 10 * FP32_ATOL  # the rounding is visible



@pytest.mark.parametrize("kind, precision", [("hmn", "int8"), ("hmn", "fp16"), ("pixel", "uint8"), ("haba", "int8"),
                                             ("idc", "fp16")])
def test_a_container_generates_from_its_stored_values_and_trains_its_raw_ones(digits, kind, precision):
    cont = build(kind, digits, 10)
    with torch.no_grad():
        for p in cont.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    cont.pixel_stats = (digits.mean, digits.std)
    cont.precision = precision
    stored = copy.deepcopy(cont)
    stored.precision = "fp32"
    stored.load_state_dict(cont.values_as_stored(differentiable=False))
    classes, instances = torch.tensor([0, 3, 9]), torch.tensor([0, 1, 0])
    assert torch.equal(cont.generate(classes, instances), stored.generate(classes, instances))
    assert torch.equal(cont.generate_own(classes, instances), stored.generate_own(classes, instances))
    cont.generate(classes, instances).square().sum().backward()
    assert all(p.grad is not None for p in cont.parameters() if p.requires_grad)  # straight through
    raw = copy.deepcopy(cont)
    raw.precision = "fp32"
    assert not torch.equal(raw.generate(classes, instances), stored.generate(classes, instances))  # rounded


def test_uint8_is_for_images_only(digits):
    cont = build("hmn", digits, 10)
    cont.precision = "uint8"
    with pytest.raises(ValueError, match="not image-like"):
        cont.values_as_stored()


@pytest.mark.parametrize("text, value", [("122880", 122880), ("120KB", 120_000), ("120KiB", 122_880),
                                         ("1.2MB", 1_200_000), (" 30 kb ", 30_000), (4096, 4096)])
def test_byte_budgets_parse(text, value):
    from edgecond.budget import parse_bytes

    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "12QB", "-5", "0", "0.5", "1.0001KB", "KB"])
def test_bad_byte_budgets_are_refused(text):
    from edgecond.budget import parse_bytes

    with pytest.raises(ValueError, match="byte budget"):
        parse_bytes(text)
