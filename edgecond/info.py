"""What a container file holds, as a dict (`edgecond info`): bytes as stored, by tier."""

from __future__ import annotations

from .io import load_container, resolve


def describe(path) -> dict:
    p = resolve(path)
    container, meta = load_container(p)
    c, h, w = meta["image_shape"]
    per_ipc = c * h * w * len(meta["classes"])
    budget = int(meta.get("budget_bytes", 4 * meta["budget_floats"]))  # files before byte budgets: fp32 IPC
    stored = container.stored_bytes()
    return {
        "path": str(p),
        "kind": meta["kind"],
        "format_version": meta["format_version"],
        "edgecond_version": meta["edgecond_version"],
        "dataset": meta.get("dataset"),
        "classes": meta["classes"],
        "image_shape": meta["image_shape"],
        "instances_per_class": container.instances_per_class,
        "precision": container.precision,
        "budget_ipc": meta["budget_ipc"],
        "budget_bytes": budget,
        "budget_floats": meta["budget_floats"],
        "stored_bytes": stored,
        "stored_values": container.stored_floats(),
        "stored_floats": container.stored_floats(),  # the name before byte budgets
        "stored_ipc": container.stored_floats() / per_ipc,
        "budget_use": stored / max(1, budget),
        "file_bytes": p.stat().st_size,
        "parts": container.parts(),
        "parts_bytes": container.parts_bytes(),
        "config": meta["config"],
    }
