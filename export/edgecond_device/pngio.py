"""Minimal PNG writer (stdlib zlib) so the device needs no imaging library."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, 1|3) -> PNG bytes (greyscale or RGB, 8 bit)."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError("encode_png needs uint8 (H, W) or (H, W, 3)")
    h, w = pixels.shape[:2]
    colour = 0 if pixels.ndim == 2 else 2
    raw = b"".join(b"\x00" + pixels[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def grid(pixels: np.ndarray, labels: np.ndarray, scale: int = 1, pad: int = 1) -> np.ndarray:
    """(N, H, W, C) uint8 -> one image, a row per class (in label order of first appearance)."""
    classes = list(dict.fromkeys(labels.tolist()))
    cols = max(int((labels == c).sum()) for c in classes)
    n, h, w, c = pixels.shape
    out = np.full((len(classes) * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for r, cl in enumerate(classes):
        for j, img in enumerate(pixels[labels == cl]):
            y0, x0 = pad + r * (h + pad), pad + j * (w + pad)
            out[y0:y0 + h, x0:x0 + w] = img
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out
