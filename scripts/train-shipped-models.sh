#!/usr/bin/env bash
# Reproduces models/scenes-{concat,separate,gated}: the data, then the three
# training runs side by side (one thread each), in two stages, then the
# shipped files. The architecture is the default one (`Config::small`):
# 16×16 patches on 64×64 images, d 128, 4/2/2 layers, and for gated fusion
# gates that start at alpha = 1 (`gate_init`; the session-5 gated model,
# trained with closed gates, stayed at the yes/no colour prior).
#
# Stage 1 trains from a random initialisation. Stage 2 fine-tunes stage 1's
# model (`--init`) with a fresh schedule, images shifted by up to 4 pixels and
# the yes/no shape questions weighing 4×: those questions are learned last
# (README, "What was measured in session 5").
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
FUSECAP=${FUSECAP:-target/release/fusecap}
DATA="data/scenes/manifest.jsonl data/easy-vqa/manifest.jsonl"
$FUSECAP data synth --out data/scenes --count 3000 --seed 7 --force
$FUSECAP data easy-vqa --from ../shared/data/easy_vqa-1.0-py3-none-any.whl --out data/easy-vqa --force
for fusion in concat separate gated; do
  $FUSECAP train --data $DATA --fusion "$fusion" --out "runs/scenes-$fusion-stage1" \
    --steps 8000 --batch-size 64 --group-size 1 --lr 1e-3 --warmup 200 \
    --type-weight shape=2 --type-weight 'yes/no shape=2' \
    --eval-every 1000 --checkpoint-every 500 --seed 0 --quiet &
done
wait
for fusion in concat separate gated; do
  $FUSECAP train --data $DATA --fusion "$fusion" --out "runs/scenes-$fusion" \
    --init "runs/scenes-$fusion-stage1" \
    --steps 2000 --batch-size 64 --group-size 1 --lr 5e-4 --warmup 100 --augment-shift 4 \
    --type-weight shape=2 --type-weight 'yes/no shape=4' \
    --eval-every 500 --checkpoint-every 250 --seed 0 --quiet &
done
wait
for fusion in concat separate gated; do
  mkdir -p "models/scenes-$fusion"
  for file in training.jsonl loss.png train_state.json; do
    cp "runs/scenes-$fusion-stage1/$file" "models/scenes-$fusion/stage1-$file"
  done
  cp "runs/scenes-$fusion"/{config.json,model.safetensors,tokenizer.json,training.jsonl,loss.png,train_state.json} "models/scenes-$fusion/"
done
