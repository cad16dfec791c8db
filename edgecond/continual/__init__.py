"""Class-incremental learning on Avalanche with replay regenerated on the device.

Folders by concern, as Avalanche: `scenario.py` builds the stream, `buffers.py` holds the
storage policies (real exemplars per class; HMN containers regenerated with onnxruntime),
`harness.py` runs the strategies at equal buffer bytes and scores them.
"""

import importlib.util

if importlib.util.find_spec("avalanche") is None:
    raise ImportError("edgecond.continual needs Avalanche: pip install 'edgecond[continual]'")
