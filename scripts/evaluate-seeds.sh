#!/usr/bin/env bash
# Evaluates every run of the shipped recipe that scripts/train-shipped-models.sh
# left in runs/scenes-FUSION-seedSEED (both seeds), once, on the held-out test
# splits, and draws their validation curves on one plot:
# - docs/results/seeds/eval-{scenes,scenes-noise,scenes-probe,easy-vqa}-FUSION-seedSEED.json (summaries;
#   the whole results stay in runs/eval/seeds/);
# - docs/results/seeds/learning-curves.png.
# scripts/seeds_table.py prints the README's seed table from them. A run
# whose summary exists is not evaluated again (each test split once per model).
# NAME and OUT evaluate another family's runs, e.g. the pretrained models':
#   NAME=pretrained OUT=docs/results/pretrained-seeds scripts/evaluate-seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FUSECAP=${FUSECAP:-target/release/fusecap}
NAME=${NAME:-scenes}
OUT=${OUT:-docs/results/seeds}
mkdir -p "$OUT" runs/eval/seeds
runs=()
for fusion in concat separate gated; do
  for seed in 0 1; do
    run="runs/$NAME-$fusion-seed$seed"
    # Finished runs only: train_state.json's step has reached its --steps.
    python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(s["step"] != s["options"]["steps"])' "$run/train_state.json" 2>/dev/null || continue
    runs+=(--model "$run")
    for data in scenes scenes-noise scenes-probe easy-vqa; do
      full="runs/eval/seeds/eval-$data-$NAME-$fusion-seed$seed.json"
      [ -f "$OUT/eval-$data-$fusion-seed$seed.json" ] && continue
      $FUSECAP eval --model "$run" --data "data/$data/manifest.jsonl" --split test \
        --json "$full" --quiet > /dev/null
      python3 scripts/eval_summary.py "$full" > "$OUT/eval-$data-$fusion-seed$seed.json"
    done
  done
done
# --curves draws from each run's training.jsonl; the comparison itself is not kept.
$FUSECAP compare "${runs[@]}" --data data/scenes/manifest.jsonl --split val --limit 1 --quiet \
  --curves "$OUT/learning-curves.png" > /dev/null
