"""The one place the version of both distributions (edgecond, edgecond-device) is written."""

__version__ = "0.2.0"
