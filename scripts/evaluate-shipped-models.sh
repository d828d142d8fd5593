#!/usr/bin/env bash
# Evaluates the shipped models on the held-out test splits, once, and writes
# what README.md and the model cards quote under docs/results/: per-type
# tables and plots (`compare`), learning curves, the accuracy by object count
# (`eval`), and attention grids (`explain`). Needs the data that
# scripts/train-shipped-models.sh makes.
set -euo pipefail
cd "$(dirname "$0")/.."
FUSECAP=target/release/fusecap
OUT=docs/results
mkdir -p "$OUT" runs
$FUSECAP compare --fusion all --data data/scenes/manifest.jsonl --split test --limit 1 \
  --curves "$OUT/learning-curves.png" --quiet > /dev/null
for data in scenes scenes-noise easy-vqa; do
  $FUSECAP compare --fusion all --data "data/$data/manifest.jsonl" --split test \
    --plot "$OUT/$data-per-type.png" --json "$OUT/$data-compare.json" > "$OUT/$data-compare.md"
done
for fusion in concat separate gated; do
  # The full report, every prediction included, stays in runs/ (large);
  # docs/results/ gets the printed one, with the table by object count.
  $FUSECAP eval --fusion "$fusion" --data data/scenes/manifest.jsonl --split test --quiet \
    --json "runs/eval-$fusion-scenes.json" > "$OUT/scenes-eval-$fusion.txt"
  rm -rf "$OUT/explain-$fusion" # one image per answer token: drop an older answer's
  $FUSECAP explain samples/scene-1.png --question "what color is the star?" \
    --fusion "$fusion" --out "$OUT/explain-$fusion" > "$OUT/explain-$fusion.txt"
done
