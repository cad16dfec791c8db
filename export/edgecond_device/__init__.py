"""edgecond-device: regenerate replay exemplars from an exported edgecond ONNX model.

Depends on numpy, onnxruntime and click only; importing it never imports torch.
"""

__version__ = "0.1.0"
