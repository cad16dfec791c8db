"""Device-side cost of a CIFAR-sized HMN: model bytes, regeneration speed, cold start, memory, accuracy.

    python benchmarks/device.py                       # HMN at the CIFAR-10 10-IPC configuration
    python benchmarks/device.py --container benchmarks/runs/cifar10_mini-hmn-ipc10-s0 --results device-quick

Regeneration cost does not depend on the memories' values, so without --container the
benchmark uses a freshly initialised HMN of Table 7's CIFAR-10 10-IPC shape (278 images per
class). Measures: model bytes of fp32/fp16/int8 as .onnx and .ort (onnxruntime's format for
its minimal/mobile builds) against the budget's bytes; images/s for 1,000 images at 1 and 2
onnxruntime threads and several batch sizes (median of 7 runs), and at 1 thread for every
.ort; cold start to the first image and peak RSS of a process that only regenerates; torch
eager on the same container; GFLOP/s achieved against the decoder's multiply-adds. With a
condensed --container, also the test accuracy of a ConvNet trained on each precision's
regenerated images (quick protocol, --seeds seeds): the size/accuracy trade.
Writes results/<--results>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import fmt, write
from edgecond.budget import solve_hmn
from edgecond.config import eval_config
from edgecond.data import load_dataset
from edgecond.evaluation import evaluate_images
from edgecond.containers.hmn import HMN
from edgecond.export import export_onnx
from edgecond.io import load_container
from edgecond_device import Regenerator

COLD_START = """
import sys, time
t0 = time.perf_counter()
from edgecond_device import Regenerator
r = Regenerator(sys.argv[1], threads=1)
r.run([0], [0])
t1 = time.perf_counter()
x, _ = r.generate(per_class=100, batch_size=250)
hwm = [int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
print(t1 - t0, hwm, 'torch' in sys.modules)
"""


def decoder_macs(hmn: HMN) -> int:
    """Multiply-adds of one image through the decoder (transposed convolutions)."""
    macs, side = 0, hmn.memory_size
    for m in hmn.decoder:
        if isinstance(m, torch.nn.ConvTranspose2d):
            cin, cout, k, _ = m.weight.shape
            macs += cin * cout * k * k * side * side  # every input pixel scatters a k x k x cout patch
            side *= 2
    return macs


def median_time(fn, repeats: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _accuracy(models: dict, meta: dict, args) -> dict:
    """Test accuracy of a ConvNet trained on each precision's regenerated images (the .ort
    regenerates the .onnx's images: the export's parity check holds both to the same tolerance)."""
    torch.set_num_threads(args.threads)
    data = load_dataset(meta["dataset"])
    out = {}
    for p, m in models.items():
        x, y = Regenerator(m["path"], threads=args.threads).generate()
        ev = evaluate_images(torch.from_numpy(x), torch.from_numpy(y), data, eval_config("quick"), seeds=args.seeds,
                             progress=False)
        out[p] = {k: ev[k] for k in ("accuracy_mean", "accuracy_std", "accuracies")}
        print(f"{p}: {fmt(ev['accuracies'])}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--container", default=None, help="a condensed HMN run directory (default: CIFAR-10 10-IPC shape)")
    ap.add_argument("--results", default="device", help="results/<name>.{json,md} to write (default: device)")
    ap.add_argument("--seeds", type=int, default=3, help="evaluation seeds of the accuracy table (with --container)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the accuracy table's training")
    args = ap.parse_args()
    if args.container:
        hmn, meta = load_container(args.container)
    else:
        shape = solve_hmn((3, 32, 32), 10, 10)
        hmn = HMN(**shape.hmn_kwargs())
        hmn.init_memories(torch.Generator().manual_seed(0))
        meta = {"kind": "hmn", "classes": [str(i) for i in range(10)], "image_shape": [3, 32, 32],
                "mean": [0.5] * 3, "std": [0.25] * 3, "budget_ipc": 10, "budget_floats": 307200}
    hmn.eval()
    tmp = Path(tempfile.mkdtemp())
    models = {p: export_onnx(hmn, meta, tmp / f"{p}.onnx", precision=p, ort_format=True) for p in ("fp32", "fp16", "int8")}
    files = {(p, Path(f).suffix): info for p, m in models.items() for f, info in m["files"].items()}
    budget_bytes = 4 * meta["budget_floats"]
    n_images = 1000
    per_class = n_images // hmn.num_classes
    macs = decoder_macs(hmn)

    speed = []
    for threads in (1, 2):
        for precision in ("fp32", "fp16", "int8"):
            r = Regenerator(models[precision]["path"], threads=threads)
            for bs in (100, 250, 1000):
                t = median_time(lambda: r.generate(per_class=per_class, batch_size=bs))
                speed.append({"runtime": f"onnxruntime {precision}", "threads": threads, "batch": bs, "seconds": t,
                              "images_per_s": n_images / t, "gflops": 2 * macs * n_images / t / 1e9})
        if threads == 1:  # the ORT-format models, as a minimal build would run them
            for precision in ("fp32", "fp16", "int8"):
                r = Regenerator(tmp / f"{precision}.ort", threads=1)
                t = median_time(lambda: r.generate(per_class=per_class, batch_size=250))
                speed.append({"runtime": f"onnxruntime {precision} .ort", "threads": 1, "batch": 250, "seconds": t,
                              "images_per_s": n_images / t, "gflops": 2 * macs * n_images / t / 1e9})
        torch.set_num_threads(threads)
        with torch.no_grad():
            t = median_time(lambda: hmn.images(per_class=per_class, batch_size=250))
        speed.append({"runtime": "torch eager fp32", "threads": threads, "batch": 250, "seconds": t,
                      "images_per_s": n_images / t, "gflops": 2 * macs * n_images / t / 1e9})

    cold = subprocess.run([sys.executable, "-c", COLD_START, models["fp32"]["path"]], capture_output=True,
                          text=True, check=True).stdout.split()
    # at equal batch: torch's batch against onnxruntime fp32 at the same batch (its best batch would flatter it)
    torch_row = next(s for s in speed if s["threads"] == 1 and s["runtime"] == "torch eager fp32")
    torch_1 = torch_row["seconds"]
    best_ort = next(s["seconds"] for s in speed if s["threads"] == 1 and s["runtime"] == "onnxruntime fp32"
                    and s["batch"] == torch_row["batch"])
    result = {
        "instances_per_class": hmn.instances_per_class, "stored_floats": hmn.stored_floats(),
        "budget_bytes": budget_bytes, "decoder_macs_per_image": macs,
        "model_bytes": {p: m["bytes"] for p, m in models.items()},
        "file_bytes": {f"{p}{ext}": f["bytes"] for (p, ext), f in files.items()},
        "fp16_vs_fp32": {ext: files[("fp16", ext)]["bytes"] / files[("fp32", ext)]["bytes"] for ext in (".onnx", ".ort")},
        "int8_vs_fp32": {ext: files[("int8", ext)]["bytes"] / files[("fp32", ext)]["bytes"] for ext in (".onnx", ".ort")},
        "max_abs_error": {p: m["max_abs_error"] for p, m in models.items()},
        "speed": speed, "cold_start_s": float(cold[0]), "regen_process_peak_rss_mb": float(cold[1]),
        "regen_process_imported_torch": cold[2] == "True",
        "onnxruntime_vs_torch_1thread": torch_1 / best_ort,
    }
    accuracy = _accuracy(models, meta, args) if args.container else {}
    result["accuracy"] = accuracy
    lines = [f"Budget: {budget_bytes:,} bytes ({meta['budget_ipc']:g} IPC of float32); the container stores "
             f"{hmn.stored_floats():,} values.", "",
             "| model | bytes | vs budget bytes | vs fp32 of its format | max abs error | test accuracy (%) |",
             "|---|---|---|---|---|---|"]
    for (p, ext), f in files.items():
        acc = accuracy.get(p)
        lines.append(f"| {p} {ext} | {f['bytes']:,} | {f['bytes'] / budget_bytes:.3f} | "
                     f"{f['bytes'] / files[('fp32', ext)]['bytes']:.3f} | {f['max_abs_error']:.1e} | "
                     f"{fmt(acc['accuracies']) if acc else ''} |")
    lines += ["", f"Regenerating {n_images:,} images (HMN, {hmn.instances_per_class} per class stored; "
              f"decoder {macs / 1e6:.2f} M multiply-adds per image):", "",
              "| runtime | threads | batch | time (ms) | images/s | GFLOP/s |", "|---|---|---|---|---|---|"]
    for s in speed:
        lines.append(f"| {s['runtime']} | {s['threads']} | {s['batch']} | {1e3 * s['seconds']:.1f} | "
                     f"{s['images_per_s']:,.0f} | {s['gflops']:.1f} |")
    lines += ["", f"Cold start to the first image: {1e3 * result['cold_start_s']:.0f} ms; peak RSS of a process that "
              f"only regenerates: {result['regen_process_peak_rss_mb']:.0f} MB (torch imported: "
              f"{result['regen_process_imported_torch']}); onnxruntime fp32 is "
              f"{result['onnxruntime_vs_torch_1thread']:.2f}x faster than torch eager at 1 thread and the same batch."]
    write(args.results, result, "\n".join(lines))
    print(json.dumps({k: v for k, v in result.items() if k != "speed"}, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
