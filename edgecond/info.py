"""What a container file holds, as a dict (`edgecond info`)."""

from __future__ import annotations

from .io import load_container, resolve


def describe(path) -> dict:
    p = resolve(path)
    container, meta = load_container(p)
    c, h, w = meta["image_shape"]
    per_ipc = c * h * w * len(meta["classes"])
    stored = container.stored_floats()
    return {
        "path": str(p),
        "kind": meta["kind"],
        "format_version": meta["format_version"],
        "edgecond_version": meta["edgecond_version"],
        "dataset": meta.get("dataset"),
        "classes": meta["classes"],
        "image_shape": meta["image_shape"],
        "instances_per_class": container.instances_per_class,
        "budget_ipc": meta["budget_ipc"],
        "budget_floats": meta["budget_floats"],
        "budget_bytes": 4 * meta["budget_floats"],
        "stored_floats": stored,
        "stored_ipc": stored / per_ipc,
        "budget_use": stored / max(1, meta["budget_floats"]),
        "file_bytes": p.stat().st_size,
        "parts": container.parts(),
        "config": meta["config"],
    }
