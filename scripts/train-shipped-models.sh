#!/usr/bin/env bash
# Reproduces models/scenes-concat, the default model, and the from-scratch
# separate and gated models that docs/findings.md measures beside it: the data,
# then one `fusecap train` per model, identical but for --fusion (and gated's
# two flags, below), then the model directory.
#
# The recipe (configs/scenes-aux.json, 60,000 steps; docs/findings.md's
# separate and gated runs stopped at 30,000, STEPS=30000):
# - 16×16 patches on 48×48 images, so the 3×3 token grid lines up with the
#   scenes' 3×3 grid; each pixel's column and row as two extra input channels;
#   2 vision layers that also read the question; d 128, 4/2/2 layers.
# - Data: easy-VQA's training split, and half of every batch multi-object
#   scenes drawn afresh for each step (--stream-share 0.5: no scene is seen
#   twice; white, tinted, gradient and noisy backgrounds; questions balanced
#   over type, template and answer).
# - Two auxiliary losses on the streamed scenes: each vision token names its
#   cell's object's attributes, and marks whether the question names that
#   object (docs/design.md).
# docs/findings.md ("Longer training", "With both losses…") has why these
# choices, with the runs; configs/scenes-qv2.json with STEPS=40000 is the
# recipe without the losses.
# Only concat ships. The other two go beside it in MODELS_DIR (scenes-gated
# with two more flags: "Relation ×3 and gates at the common learning rate" in
# docs/findings.md), where FUSECAP_MODELS=runs/models finds them by name:
#   FUSIONS=separate STEPS=30000 MODELS_DIR=runs/models scripts/train-shipped-models.sh
#   FUSIONS=gated STEPS=30000 MODELS_DIR=runs/models TRAIN_ARGS="--stream-type-weight relation=3 --gate-lr-scale 1" scripts/train-shipped-models.sh
#
# Needs the easy-VQA wheel: EASY_VQA_WHEEL=path/to/easy_vqa-1.0-py3-none-any.whl,
# by default in the current folder (`pip download easy-vqa==1.0 --no-deps`).
# FUSIONS (default "concat") the fusions to train, SEED another seed,
# THREADS=1 runs side by side (one core each), CONFIG and STEPS another recipe,
# TRAIN_ARGS more `fusecap train` flags, NAME another model name (default
# scenes). Runs go to runs/NAME-FUSION-seedSEED; with SEED=0 the model
# directories MODELS_DIR/NAME-FUSION (default models/) get the files a user
# needs (not with SHIP=0).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
FUSECAP=${FUSECAP:-target/release/fusecap}
SEED=${SEED:-0}
CONFIG=${CONFIG:-configs/scenes-aux.json}
STEPS=${STEPS:-60000}
NAME=${NAME:-scenes}
$FUSECAP data easy-vqa --from "${EASY_VQA_WHEEL:-easy_vqa-1.0-py3-none-any.whl}" --out data/easy-vqa --force
# The evaluation sets (never trained on): scenes on a plain and a noisy
# background, and a binding probe asked as training's stream asks (many
# "is there a red circle?" questions with red and circle on different objects).
$FUSECAP data synth --out data/scenes --count 3000 --seed 7 --force
$FUSECAP data synth --out data/scenes-noise --count 3000 --seed 7 --noise --force
$FUSECAP data synth --out data/scenes-probe --count 3000 --seed 13 --balanced --test-fraction 1 --force
for fusion in ${FUSIONS:-concat}; do
  run="runs/$NAME-$fusion-seed$SEED"
  $FUSECAP train --config "$CONFIG" --fusion "$fusion" \
    --data data/easy-vqa/manifest.jsonl --stream-share 0.5 \
    --steps "$STEPS" --warmup 200 --eval-every 1000 --checkpoint-every 1000 \
    --seed "$SEED" --out "$run" --threads "${THREADS:-2}" --force ${TRAIN_ARGS:-}
  if [ "$SEED" = 0 ] && [ "${SHIP:-1}" != 0 ]; then
    model="${MODELS_DIR:-models}/$NAME-$fusion"
    mkdir -p "$model"
    cp "$run"/{config.json,model.safetensors,tokenizer.json} "$model/"
    # The log of every 50th step and every validation (the whole log is 6 MB).
    awk '/val_accuracy/ || NR % 50 == 1 { print; last = ""; next } { last = $0 } END { if (last != "") print last }' \
      "$run/training.jsonl" > "$model/training.jsonl"
  fi
done
