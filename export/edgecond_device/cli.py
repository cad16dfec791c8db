"""The `edgecond-device` command line (runs on the device: no torch)."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecond-device")
def main():
    """Regenerate training images from an edgecond ONNX model with onnxruntime alone."""
