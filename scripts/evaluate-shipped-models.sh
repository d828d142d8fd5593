#!/usr/bin/env bash
# Regenerates the comparison of the shipped models in README.md and the
# model cards: tables, per-type plots and attention grids, under docs/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
FUSECAP=target/release/fusecap
OUT=docs/results
mkdir -p "$OUT"
$FUSECAP compare --fusion all --data data/scenes/manifest.jsonl --split test --limit 1 \
  --curves "$OUT/learning-curves.png" --quiet > /dev/null
for data in scenes easy-vqa; do
  $FUSECAP compare --fusion all --data "data/$data/manifest.jsonl" --split test \
    --plot "$OUT/$data-per-type.png" --json "$OUT/$data-compare.json" > "$OUT/$data-compare.md"
done
for fusion in concat separate gated; do
  rm -rf "$OUT/explain-$fusion" # one image per answer token: drop an older answer's
  $FUSECAP explain samples/scene-1.png --question "what color is the star?" \
    --fusion "$fusion" --out "$OUT/explain-$fusion" > "$OUT/explain-$fusion.txt"
done
