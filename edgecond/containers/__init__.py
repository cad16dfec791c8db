"""Data containers: modules that generate image (class c, instance i). The registry of kinds,
and how each is built within a budget, lives in edgecond/kinds/."""

from __future__ import annotations

from .base import Container
from .haba import HaBa
from .hmn import HMN
from .pixel import IDCContainer, PixelContainer

__all__ = ["Container", "HMN", "HaBa", "PixelContainer", "IDCContainer"]
