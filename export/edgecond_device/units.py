"""Storage units, defined once for both halves: the precision names a model's values can be
stored at and the bytes each stored value takes. The workstation (edgecond) imports them from
here, so the device runtime -- which must not import torch -- is their home."""

BYTES_PER_VALUE = {"fp32": 4, "fp16": 2, "int8": 1}
PRECISIONS = tuple(BYTES_PER_VALUE)  # fp32 | fp16 | int8
