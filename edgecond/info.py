"""What a container file holds, as a dict (`edgecond info`): bytes as stored, by tier."""

from __future__ import annotations

from .io import load_container, resolve


def describe(path) -> dict:
    p = resolve(path)
    container, meta = load_container(p)
    c, h, w = meta["image_shape"]
    per_ipc = c * h * w * len(meta["classes"])
    budget = meta["budget_bytes"]
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
        "parts_stored_as": stored_as(container),
        "config": meta["config"],
    }


def stored_as(container) -> dict[str, str]:
    """Per part, how its tensors are stored: "int8", "uint8" (image-like tensors as pixels),
    "int8+fp32" (int8 with fp32 vectors beside), ..."""
    from .quantise import vector_like

    out: dict[str, set] = {}
    for name, t in container.state_dict().items():
        if t.is_floating_point():
            prec = container.storage_precision(name)
            if prec == "int8" and vector_like(t.shape[1:] if container.stored_per_slice(name) else t.shape):
                prec = "fp32"
            out.setdefault(container.part_of(name), set()).add(prec)
    return {part: "+".join(sorted(p, key=["uint8", "int8", "fp16", "fp32"].index)) for part, p in out.items()}
