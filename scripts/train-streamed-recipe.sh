#!/usr/bin/env bash
# The one-command recipe that is to replace the staged one of the shipped
# models: one `fusecap train` per fusion, one after another on both cores,
# differing only in --fusion. Its runs go to runs/scenes-FUSION-seedSEED.
# docs/findings.md ("Binding") has what it gives and where it falls short,
# which is why the shipped models are not yet trained by it.
#
# The architecture is configs/scenes.json (16×16 patches on 48×48 images, so
# the 3×3 token grid lines up with the scenes' 3×3 grid; each pixel's column
# and row as two extra input channels; d 128, 4/2/2 layers).
# The data: easy-VQA's training split, and half of every batch multi-object
# scenes drawn afresh for each step (--stream-share 0.5: no scene is seen
# twice; white, tinted, gradient and noisy backgrounds; questions balanced
# over type, template and answer).
#
# Needs the easy-VQA wheel: EASY_VQA_WHEEL=path/to/easy_vqa-1.0-py3-none-any.whl,
# by default in the current folder (`pip download easy-vqa==1.0 --no-deps`).
# Set FUSIONS="concat" (for example) to train fewer models, SEED for another seed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
FUSECAP=${FUSECAP:-target/release/fusecap}
SEED=${SEED:-0}
$FUSECAP data easy-vqa --from "${EASY_VQA_WHEEL:-easy_vqa-1.0-py3-none-any.whl}" --out data/easy-vqa --force
# The evaluation sets (never trained on): scenes on a plain and a noisy background.
$FUSECAP data synth --out data/scenes --count 3000 --seed 7 --force
$FUSECAP data synth --out data/scenes-noise --count 3000 --seed 7 --noise --force
for fusion in ${FUSIONS:-concat separate gated}; do
  $FUSECAP train --config configs/scenes.json --fusion "$fusion" \
    --data data/easy-vqa/manifest.jsonl --stream-share 0.5 \
    --steps 15000 --warmup 200 --eval-every 1000 --checkpoint-every 1000 \
    --seed "$SEED" --out "runs/scenes-$fusion-seed$SEED" --force
done
