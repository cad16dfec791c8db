"""edgecond: on-device continual learning with condensed data."""

from edgecond_device._version import __version__  # one version for both distributions

__all__ = ["__version__"]
