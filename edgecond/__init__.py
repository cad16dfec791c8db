"""edgecond: on-device continual learning with condensed data."""

__version__ = "0.1.0"
