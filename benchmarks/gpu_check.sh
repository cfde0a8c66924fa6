#!/usr/bin/env bash
# The GPU check in one command: whenever a CUDA machine is at hand, in about 8 minutes,
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          (default benchmarks/results/gpu-<date>)
#
# 1. speed: benchmarks/bench_train.py --device cuda on mlp-28 and dcgan-64 at batch 128, ours
#    against the tutorials' hand-written loop, in fp32, bf16 and bf16 + torch.compile;
# 2. quality: the colour presets (avatars and Wesnoth sprites, the best recipe of each) for a
#    fixed number of steps on the GPU, then `ganforge eval` (FID, KID, precision/recall,
#    density/coverage, artefact ratio; 5,000 samples) with each dataset's domain evaluator
#    (trained here on the GPU first when it is missing);
# 3. one results file, OUT_DIR/gpu-check.md, with every table and the commands.
#
# CI never runs it. Knobs (environment): DEVICE (cuda), STEPS (the presets' steps, 3000), N
# (eval samples, 5000), PY / GANFORGE (the interpreter and command, .venv's by default).
# DEVICE=cpu STEPS=20 N=200 QUICK=1 runs the same plumbing on a CPU in a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/gpu-$(date +%Y%m%d)}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-3000}
N=${N:-5000}
PY=${PY:-.venv/bin/python}
GANFORGE=${GANFORGE:-.venv/bin/ganforge}
QUICK=${QUICK:-0}
PRESETS=${PRESETS:-"dcgan-hinge-avatars dcgan-hinge-wesnoth"}
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
: > "$LOG"
say() { echo "[gpu-check] $*" | tee -a "$LOG"; }
run() { say "\$ $*"; "$@" 2>&1 | tee -a "$LOG"; }
t0=$(date +%s)

"$PY" - <<EOF | tee -a "$LOG"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
EOF

# ---------------------------------------------------------------- 1. speed (about 3 minutes)
configs="mlp-28,dcgan-64"
speed=(--device "$DEVICE" --configs "$configs" --batch 128)
[ "$QUICK" = 1 ] && speed+=(--steps 3 --repeats 1 --warmup 1)
run "$PY" benchmarks/bench_train.py "${speed[@]}" --out "$OUT/train-fp32"
run "$PY" benchmarks/bench_train.py "${speed[@]}" --amp bf16 --out "$OUT/train-bf16"
run "$PY" benchmarks/bench_train.py "${speed[@]}" --amp bf16 --compile --out "$OUT/train-bf16-compile"

# ---------------------------------------------------------------- 2. quality (about 4 minutes)
for preset in $PRESETS; do
  data=$("$PY" -c "from ganforge.core.config import load_yaml; print(load_yaml('$preset')['data']['name'])")
  size=$("$PY" -c "from ganforge.core.config import load_yaml; print(load_yaml('$preset')['data'].get('img_size', 64))")
  if ! "$GANFORGE" evaluator info "$data" --img-size "$size" >/dev/null 2>&1; then
    ev=(evaluator train --data "$data" --img-size "$size" --device "$DEVICE")
    [ "$QUICK" = 1 ] && ev+=(--epochs 0.2)
    run "$GANFORGE" "${ev[@]}"
  fi
  run "$GANFORGE" train --config "$preset" --out "$OUT/runs/$preset" --overwrite --steps "$STEPS" \
      train.device="$DEVICE" log.progress=false log.sample_every=0 log.ckpt_every=0
  run "$GANFORGE" eval "$OUT/runs/$preset" --n "$N" --device "$DEVICE" --json "$OUT/eval-$preset.json"
  cp "$OUT/runs/$preset/curves.png" "$OUT/curves-$preset.png" 2>/dev/null || true
  "$GANFORGE" sample "$OUT/runs/$preset" --n 64 --out "$OUT/samples-$preset.png" --device "$DEVICE" >/dev/null
done

# ---------------------------------------------------------------- 3. one results file
"$PY" - "$OUT" "$PRESETS" "$(( $(date +%s) - t0 ))" <<'EOF'
import json, sys
from pathlib import Path
out, presets, seconds = Path(sys.argv[1]), sys.argv[2].split(), int(sys.argv[3])
lines = ["# GPU check", "", f"`bash benchmarks/gpu_check.sh {out}` ({seconds} s in all)", ""]
log = (out / "gpu-check.log").read_text().splitlines()
lines += [f"    {l}" for l in log[:3]] + [""]
for name in ("train-fp32", "train-bf16", "train-bf16-compile"):
    md = out / f"{name}.md"
    if md.exists():
        lines += [f"## {name}", "", md.read_text().strip(), ""]
lines += ["## The colour presets on the GPU", "", "| preset | steps | FID | KID | precision | recall | coverage | artefact ratio |",
          "|---|---|---|---|---|---|---|---|"]
for p in presets:
    f = out / f"eval-{p}.json"
    if f.exists():
        r = json.loads(f.read_text())
        cells = [f"{r.get(k, float('nan')):.3g}" for k in ("fid", "kid_mean", "precision", "recall", "coverage", "hf_ratio")]
        lines.append(f"| {p} | {r.get('step')} | " + " | ".join(cells) + f" |")
lines += ["", "Samples: " + ", ".join(f"samples-{p}.png" for p in presets), ""]
(out / "gpu-check.md").write_text("\n".join(lines) + "\n")
print(f"wrote {out / 'gpu-check.md'}")
EOF
say "done in $(( $(date +%s) - t0 )) s"
