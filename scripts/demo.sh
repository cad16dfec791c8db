#!/usr/bin/env bash
# The main job on the embedded digits dataset (quick preset, ~15 minutes on 2 CPU cores):
# condense an HMN at a 5 images-per-class budget, make the random real-image baseline at the
# same budget, evaluate both with 3 seeds, and show where the pictures are.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-runs/demo}
IPC=${IPC:-5}
# knobs for a smoke run (the tests use them): extra arguments for condense and evaluate
CONDENSE_ARGS=${CONDENSE_ARGS:-}
EVAL_ARGS=${EVAL_ARGS:-}
mkdir -p "$OUT"
"$BIN/edgecond" condense --dataset digits --ipc "$IPC" --container hmn --out "$OUT/hmn" --resume $CONDENSE_ARGS
"$BIN/edgecond" condense --dataset digits --ipc "$IPC" --container random --out "$OUT/random"
for kind in hmn random; do
  "$BIN/edgecond" evaluate "$OUT/$kind" --seeds 3 --json $EVAL_ARGS > "$OUT/$kind/eval.json"
done
"$BIN/edgecond" info "$OUT/hmn"
"$BIN/python" - "$OUT" "$IPC" <<'PY'
import json, sys, pathlib
out, ipc = pathlib.Path(sys.argv[1]), sys.argv[2]
print(f"\n| digits, {ipc} IPC budget | images per class | test accuracy | seeds |\n|---|---|---|---|")
for kind in ("hmn", "random"):
    r = json.loads((out / kind / "eval.json").read_text())
    info = json.loads((out / kind / "report.json").read_text())
    print(f"| {kind} | {info['instances_per_class']} | {100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} % "
          f"| {len(r['accuracies'])} |")
print(f"\nHMN samples: {out}/hmn/samples.png   loss curve: {out}/hmn/loss.png")
PY

# Deploy: export the HMN to ONNX and regenerate its images with the torch-free device runtime.
"$BIN/edgecond" export "$OUT/hmn" --onnx "$OUT/digits-hmn.onnx"
"$BIN/edgecond-device" regenerate "$OUT/digits-hmn.onnx" --per-class 10 --out "$OUT/device" --format png
echo "device-regenerated exemplars: $OUT/device/grid.png"
