"""edgecond-device: regenerate replay exemplars from an exported edgecond ONNX model.

Depends on numpy, click and an onnxruntime build of your choice (`edgecond-device[cpu]` brings
the CPU one; onnxruntime-gpu, -openvino, -directml... work as well); importing it never
imports torch. The runtime loads on first use, so `edgecond_device.__version__` costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .runtime import ModelError, Regenerator, read_metadata, to_uint8

__all__ = ["Regenerator", "ModelError", "read_metadata", "to_uint8", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'edgecond_device' has no attribute {name!r}")
