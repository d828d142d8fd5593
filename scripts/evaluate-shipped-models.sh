#!/usr/bin/env bash
# Evaluates the shipped models on the held-out test splits and writes what the
# README and the model cards quote, under docs/results/:
# - {scenes,easy-vqa}-compare.{json,md} and -per-type.png: the three models
#   side by side (`fusecap compare`);
# - eval-{scenes,scenes-noise,scenes-probe}-FUSION.json: binding in scenes of
#   2+ objects, the noisy-background scenes and the binding probe (`fusecap eval`);
# - explain-FUSION/: where each model looks for "what color is the star?".
# The data comes from scripts/train-shipped-models.sh; the learning curves of
# every seed, from scripts/evaluate-seeds.sh.
# By default the from-scratch models: the shipped scenes-concat and the
# scenes-separate and scenes-gated that scripts/train-shipped-models.sh puts in
# runs/models (run this with FUSECAP_MODELS=runs/models).
# MODELS (shipped names or directories) and OUT evaluate others, e.g.
#   MODELS="scenes-concat pretrained-concat" OUT=docs/results/pretrained scripts/evaluate-shipped-models.sh
# Files are named by the model's name without "scenes-" (concat, pretrained-concat).
set -euo pipefail
cd "$(dirname "$0")/.."
FUSECAP=${FUSECAP:-target/release/fusecap}
MODELS=${MODELS:-scenes-concat scenes-separate scenes-gated}
OUT=${OUT:-docs/results}
mkdir -p "$OUT" runs/eval
model_args=()
for model in $MODELS; do model_args+=(--model "$model"); done
for data in scenes easy-vqa; do
  $FUSECAP compare "${model_args[@]}" --data "data/$data/manifest.jsonl" --split test --quiet \
    --plot "$OUT/$data-per-type.png" --json "$OUT/$data-compare.json" > "$OUT/$data-compare.md"
done
for model in $MODELS; do
  key=$(basename "${model#scenes-}")
  for data in scenes scenes-noise scenes-probe; do
    # The whole result, every prediction included, stays in runs/eval/
    # (scripts/per_template.py reads it); docs/results/ gets the summary.
    $FUSECAP eval --model "$model" --data "data/$data/manifest.jsonl" --split test \
      --json "runs/eval/eval-$data-$key.json" --quiet > /dev/null
    python3 scripts/eval_summary.py "runs/eval/eval-$data-$key.json" > "$OUT/eval-$data-$key.json"
  done
  rm -rf "$OUT/explain-$key" # one image per answer token: drop an older answer's
  $FUSECAP explain samples/scene-1.png --question "what color is the star?" \
    --model "$model" --out "$OUT/explain-$key" > "$OUT/explain-$key.txt"
done
