"""The `edgecond` metadata record both halves read (a container file's, an ONNX model's): one
JSON object with an integer format version. Each caller raises its own error with the reason."""

from __future__ import annotations

import json


def parse_record(raw: str) -> tuple[dict, str | None]:
    """(the record, None), or ({}, why it is unreadable) -- why completes "FILE has ..."."""
    try:
        meta = json.loads(raw)
    except ValueError:
        return {}, "unreadable edgecond metadata (not JSON)"
    if not isinstance(meta, dict):
        return {}, "unreadable edgecond metadata (not a JSON object)"
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return {}, "a metadata field 'format_version' that is not an integer; the file was damaged or edited"
    return meta, None
