"""Storage precisions: what a stored value costs in bytes, and the value it rounds to.

A device pays for bytes. A container stored at `fp16` keeps every value in half precision;
at `int8`, every tensor with two or more non-trivial dimensions is kept as int8 codes with one
fp32 scale per channel (a memory's channels, a ConvTranspose weight's output channels: axis 1
as the ONNX graph holds them, `Container.storage_axis` in the state dict) and symmetric
rounding to [-127, 127], while vector-like tensors (biases, norm affines; the graph may hold a
vector as (n, 1, 1)) stay fp32. `uint8` is for image-like tensors stored as
pixels: the normalised value is mapped to the nearest of 256 pixel levels of its channel.

`quantise` gives the values as stored; `fake_quantise` gives the same values forward and lets
the gradient through unchanged (the straight-through estimator), so matching can train the
values the device will read. export.py stores exactly these codes and scales.
"""

from __future__ import annotations

import torch

from edgecond_device.units import BYTES_PER_VALUE as _STORED

# a container's precisions (edgecond_device.units), plus uint8: real exemplars' pixels
BYTES_PER_VALUE = {**_STORED, "uint8": 1}
# A budget given in bytes (`condense --budget`, the continual API) is stored at int8 unless told
# otherwise: the same bytes hold about 4x the values, and int8 was the best precision at every
# budget measured (docs/results.md, benchmarks/bytes.py). A budget in IPC, the papers' unit, keeps
# their fp32.
BYTE_BUDGET_PRECISION = "int8"
INT8_MAX = 127


def vector_like(shape) -> bool:
    """At most one dimension larger than 1: stored as fp32 at int8 precision."""
    return sum(int(d) > 1 for d in shape) <= 1


def _channel_shape(t: torch.Tensor, axis: int) -> list[int]:
    return [-1 if i == axis else 1 for i in range(t.ndim)]


def int8_scale(t: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """One fp32 scale per channel along `axis`: the channel's largest magnitude maps to 127."""
    moved = t.detach().float().movedim(axis, 0).reshape(t.shape[axis], -1)
    scale = moved.abs().amax(dim=1) / float(INT8_MAX)
    return torch.where(scale == 0, torch.ones_like(scale), scale)


def int8_codes(t: torch.Tensor, axis: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes, per-channel scales along `axis`) of a tensor that is not vector-like."""
    scale = int8_scale(t, axis)
    q = torch.clamp(torch.round(t.detach().float() / scale.view(_channel_shape(t, axis))), -INT8_MAX, INT8_MAX)
    return q.to(torch.int8), scale


def pixel_levels(t: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 codes of a normalised image-like tensor (..., C, H, W), by the device runtime's
    `to_uint8` formula (the nearest level, halves up), computed in the same fp32 order."""
    c = t.shape[-3]
    m, s = torch.tensor(mean).view(c, 1, 1), torch.tensor(std).view(c, 1, 1)
    return torch.clamp((t.detach().float() * s + m) * 255.0 + 0.5, 0, 255).to(torch.uint8)


def quantise(t: torch.Tensor, precision: str, mean: list[float] | None = None,
             std: list[float] | None = None, axis: int = 1) -> torch.Tensor:
    """The values `t` is stored as at `precision` (as fp32, no gradient); `axis`: int8's channels."""
    if precision == "fp32":
        return t.detach()
    if precision == "fp16":
        return t.detach().half().float()
    if precision == "int8":
        if vector_like(t.shape):
            return t.detach()
        q, scale = int8_codes(t, axis)
        return q.float() * scale.view(_channel_shape(t, axis))
    if precision == "uint8":
        if mean is None or std is None:
            raise ValueError("uint8 storage needs the pixel mean and std")
        c = t.shape[-3]
        m, s = torch.tensor(mean).view(c, 1, 1), torch.tensor(std).view(c, 1, 1)
        return (pixel_levels(t, mean, std).float() / 255.0 - m) / s
    raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(BYTES_PER_VALUE)}")


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, stored):
        return stored

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def fake_quantise(t: torch.Tensor, precision: str, mean: list[float] | None = None,
                  std: list[float] | None = None, axis: int = 1) -> torch.Tensor:
    """Exactly `quantise(t)` forward, the identity backward (the straight-through estimator)."""
    if precision == "fp32":
        return t
    return _StraightThrough.apply(t, quantise(t, precision, mean, std, axis))


def tensor_bytes(t: torch.Tensor, precision: str, axis: int = 1) -> int:
    """Bytes `t` takes stored at `precision`, scales included (int8: one fp32 scale and one int8
    zero point per channel; vector-like tensors stay fp32)."""
    if precision == "int8":
        if vector_like(t.shape):
            return 4 * t.numel()
        return t.numel() + 5 * t.shape[axis]
    return BYTES_PER_VALUE[precision] * t.numel()
