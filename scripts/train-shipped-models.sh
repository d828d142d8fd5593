#!/usr/bin/env bash
# Reproduces models/scenes-{concat,separate,gated}: the data, then the three
# training runs side by side (one thread each), then the shipped files.
# The architecture is the default one (`Config::small`):
# 16×16 patches on 64×64 images, d 128, 4/2/2 layers.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
FUSECAP=${FUSECAP:-target/release/fusecap}
$FUSECAP data synth --out data/scenes --count 3000 --seed 7 --force
$FUSECAP data easy-vqa --from ../shared/data/easy_vqa-1.0-py3-none-any.whl --out data/easy-vqa --force
for fusion in concat separate gated; do
  $FUSECAP train --data data/scenes/manifest.jsonl data/easy-vqa/manifest.jsonl \
    --fusion "$fusion" --out "runs/scenes-$fusion" \
    --steps 8000 --batch-size 64 --group-size 1 --lr 1e-3 --warmup 200 \
    --type-weight shape=2 --type-weight 'yes/no shape=2' \
    --eval-every 1000 --checkpoint-every 500 --seed 0 --quiet &
done
wait
for fusion in concat separate gated; do
  mkdir -p "models/scenes-$fusion"
  cp "runs/scenes-$fusion"/{config.json,model.safetensors,tokenizer.json,training.jsonl,loss.png,train_state.json} "models/scenes-$fusion/"
done
