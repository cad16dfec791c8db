"""Container registry: every kind of data container, found by name."""

from __future__ import annotations

from .base import Container
from .haba import HaBa
from .hmn import HMN
from .pixel import IDCContainer, PixelContainer

# kind -> class that rebuilds it from its config()
CONTAINER_CLASSES: dict[str, type[Container]] = {
    "random": PixelContainer,
    "herding": PixelContainer,
    "pixel": PixelContainer,
    "idc": IDCContainer,
    "hmn": HMN,
    "haba": HaBa,
}


def register(kind: str, cls: type[Container]) -> None:
    CONTAINER_CLASSES[kind] = cls


def build_container(kind: str, config: dict) -> Container:
    if kind not in CONTAINER_CLASSES:
        raise ValueError(f"unknown container kind {kind!r}; known: {', '.join(sorted(CONTAINER_CLASSES))}")
    return CONTAINER_CLASSES[kind](**config)


__all__ = ["Container", "HMN", "PixelContainer", "IDCContainer", "CONTAINER_CLASSES", "build_container", "register"]
