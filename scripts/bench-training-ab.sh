#!/usr/bin/env bash
# Training speed of two fusecap builds, interleaved A B A B, at 2 and 1
# threads: median samples/s of steps 21-100 of each run's training.jsonl.
#   scripts/bench-training-ab.sh OLD_FUSECAP NEW_FUSECAP [CONFIG]
# Build the old one from another commit, e.g.
#   git worktree add /tmp/old COMMIT && (cd /tmp/old && cargo build --release)
# Needs data/easy-vqa (README, `data easy-vqa`). CONFIG defaults to configs/scenes.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/training-speed.sh
A=$1; B=$2; CONFIG=${3:-configs/scenes.json}
for threads in 2 1; do for rep in 1 2 3; do for bin in "$A" "$B"; do
  out=$(mktemp -d)
  train_100_steps "$bin" "$CONFIG" "$threads" "$out/run"
  echo "threads $threads  rep $rep  $bin  $(median_samples_per_sec "$out/run") samples/s"
  rm -rf "$out"
done; done; done
