#!/usr/bin/env bash
# The main job on the embedded digits dataset: real-image baselines at 5 images per class
# and the full-data upper bound, evaluated with the quick protocol.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-runs/demo}
mkdir -p "$OUT"
for kind in random herding; do
  "$BIN/edgecond" condense --dataset digits --ipc 5 --container "$kind" --out "$OUT/$kind"
  "$BIN/edgecond" evaluate "$OUT/$kind" --seeds 3 --json > "$OUT/$kind/eval.json"
done
"$BIN/edgecond" evaluate --full --dataset digits --seeds 1 --json > "$OUT/full.json"
"$BIN/python" - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = [(k, json.loads((out / k / "eval.json").read_text())) for k in ("random", "herding")]
rows.append(("full train split", json.loads((out / "full.json").read_text())))
print("\n| container (digits, 5 IPC) | test accuracy | seeds |\n|---|---|---|")
for name, r in rows:
    print(f"| {name} | {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f} | {len(r['accuracies'])} |")
print(f"\nsamples: {out}/random/samples.png, {out}/herding/samples.png")
PY
