#!/usr/bin/env bash
# Reproduces models/scenes-{concat,separate,gated}: the data, then the three
# training runs side by side (one thread each), then the shipped files.
# Took 72–74 minutes on a 2-core CPU with the three runs sharing it (one
# thread each; about 34 minutes for one model alone at 2 threads).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
FUSECAP=target/release/fusecap
$FUSECAP data synth --out data/scenes --count 3000 --seed 7 --force
$FUSECAP data easy-vqa --from ../shared/data/easy_vqa-1.0-py3-none-any.whl --out data/easy-vqa --force
for fusion in concat separate gated; do
  $FUSECAP train --data data/scenes/manifest.jsonl data/easy-vqa/manifest.jsonl \
    --fusion "$fusion" --out "runs/scenes-$fusion" --steps 3000 --batch-size 64 \
    --lr 1e-3 --warmup 200 --eval-every 500 --checkpoint-every 250 --seed 0 --quiet &
done
wait
for fusion in concat separate gated; do
  mkdir -p "models/scenes-$fusion"
  cp "runs/scenes-$fusion"/{config.json,model.safetensors,tokenizer.json,training.jsonl,loss.png} "models/scenes-$fusion/"
done
