#!/usr/bin/env bash
# Evaluates training runs on the validation sets only (never a test split)
# and prints one table row per run, then the relation questions by kind:
# - runs/scenes-fresh: 400 scenes, `fusecap data synth --out runs/scenes-fresh --count 400 --seed 11`;
# - runs/scenes-fresh-noise: the same with `--noise`;
# - easy-VQA's held-out 5% (`--split val`).
#   scripts/evaluate-on-validation.sh RUN...
# Results: runs/eval/validation/RUN-{fresh,noise,evqa}.json (RUN with / as _).
set -euo pipefail
cd "$(dirname "$0")/.."
FUSECAP=${FUSECAP:-target/release/fusecap}
OUT=runs/eval/validation
mkdir -p "$OUT"
for run in "$@"; do
  name=$(echo "$run" | tr / _)
  for set in fresh:runs/scenes-fresh:train noise:runs/scenes-fresh-noise:train evqa:data/easy-vqa:val; do
    IFS=: read -r key data split <<< "$set"
    # Kept while newer than the run's weights.
    [ "$OUT/$name-$key.json" -nt "$run/model.safetensors" ] && continue
    $FUSECAP eval --model "$run" --data "$data/manifest.jsonl" --split "$split" \
      --json "$OUT/$name-$key.json" --quiet > /dev/null
  done
done
python3 - "$OUT" "$@" <<'PY'
import json, sys
out, runs = sys.argv[1], sys.argv[2:]
types = ["color", "shape", "size", "count", "exist", "position", "relation"]
print("| run | scenes | noisy | " + " | ".join(types) + " | easy-VQA val |")
print("|---" * (len(types) + 4) + "|")
for run in runs:
    name = run.replace("/", "_")
    fresh, noise, evqa = (json.load(open(f"{out}/{name}-{k}.json"))["vqa"] for k in ("fresh", "noise", "evqa"))
    cells = [f"{100 * fresh['per_type'][t][0]:.1f}%" for t in types]
    print(f"| {run} | {100 * fresh['accuracy']:.1f}% | {100 * noise['accuracy']:.1f}% | "
          + " | ".join(cells) + f" | {100 * evqa['accuracy']:.1f}% |")
PY
files=()
for run in "$@"; do files+=("$OUT/$(echo "$run" | tr / _)-fresh.json"); done
python3 scripts/relation_kinds.py "${files[@]}"
