#!/usr/bin/env bash
# Training speed of two fusecap builds, interleaved A B A B, at 2 and 1
# threads: median samples/s of steps 21-100 of each run's training.jsonl.
#   scripts/bench-training-ab.sh OLD_FUSECAP NEW_FUSECAP [CONFIG]
# Build the old one from another commit, e.g.
#   git worktree add /tmp/old COMMIT && (cd /tmp/old && cargo build --release)
# Needs data/easy-vqa (README, `data easy-vqa`). CONFIG defaults to configs/scenes.json.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2; CONFIG=${3:-configs/scenes.json}
for threads in 2 1; do for rep in 1 2 3; do for bin in "$A" "$B"; do
  out=$(mktemp -d)
  "$bin" train --config "$CONFIG" --fusion concat --data data/easy-vqa/manifest.jsonl \
    --stream-share 0.5 --steps 100 --warmup 200 --eval-every 100000 --checkpoint-every 100000 \
    --seed 0 --out "$out/run" --threads "$threads" --quiet >/dev/null 2>&1
  median=$(sed -n '21,100p' "$out/run/training.jsonl" \
    | grep -o '"samples_per_sec":[0-9.]*' | cut -d: -f2 | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  echo "threads $threads  rep $rep  $bin  $median samples/s"
  rm -rf "$out"
done; done; done
