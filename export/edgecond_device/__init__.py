"""edgecond-device: regenerate replay exemplars from an exported edgecond ONNX model.

Depends on numpy, onnxruntime and click only; importing it never imports torch.
"""

from .runtime import ModelError, Regenerator, read_metadata, to_uint8

__version__ = "0.1.0"
__all__ = ["Regenerator", "ModelError", "read_metadata", "to_uint8"]
