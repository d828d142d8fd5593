#!/usr/bin/env bash
# The shipped architecture from scratch (configs/scenes-qv2.json) against the
# same model on frozen pretrained encoders (configs/pretrained-dinov2-minilm.json:
# DINOv2 ViT-S/14 at 84 pixels pooled to 3x3 tokens, and MiniLM), trained
# alike: concat, the fixed scenes and easy-VQA sets (no stream, whose fresh
# images every step would defeat the feature cache), STEPS steps, seed SEED,
# one thread each, side by side. Validation only: the independently drawn
# scenes (runs/scenes-fresh, `fusecap data synth --out runs/scenes-fresh
# --count 400 --seed 11`) and easy-VQA's val split.
# Needs encoders/dinov2-small and encoders/minilm (README, "Pretrained encoders").
# usage: scripts/compare-pretrained-encoders.sh [STEPS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-6000}
SEED=${2:-0}
FUSECAP=${FUSECAP:-target/release/fusecap}
for enc in encoders/dinov2-small encoders/minilm; do
  [ -f "$enc/config.json" ] || { echo "missing $enc: import it first (README, Pretrained encoders)" >&2; exit 1; }
done
[ -f runs/scenes-fresh/manifest.jsonl ] ||
  $FUSECAP data synth --out runs/scenes-fresh --count 400 --seed 11 --quiet
run() {
  local name=$1 config=$2 out=runs/encoders-$1-seed$SEED
  /usr/bin/time -f "%e s wall" $FUSECAP train --config "$config" --fusion concat \
    --data data/scenes/manifest.jsonl data/easy-vqa/manifest.jsonl \
    --steps "$STEPS" --warmup 200 --eval-every 1000 --checkpoint-every 1000 \
    --seed "$SEED" --out "$out" --threads 1 --quiet > "$out.log" 2>&1
  $FUSECAP eval --model "$out" --data runs/scenes-fresh/manifest.jsonl --split train \
    --json "$out-fresh.json" --quiet > /dev/null
  $FUSECAP eval --model "$out" --data data/easy-vqa/manifest.jsonl --split val \
    --json "$out-easy-val.json" --quiet > /dev/null
}
run scratch configs/scenes-qv2.json &
run pretrained configs/pretrained-dinov2-minilm.json &
wait
for name in scratch pretrained; do
  for eval in fresh easy-val; do
    python3 scripts/eval_summary.py "runs/encoders-$name-seed$SEED-$eval.json" \
      > "runs/encoders-$name-seed$SEED-$eval-summary.json"
  done
done
