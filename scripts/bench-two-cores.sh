#!/usr/bin/env bash
# What this machine's two cores give training at all: samples/s of one
# one-thread run alone, of two one-thread runs at the same time (each its own
# process, so nothing is shared but the hardware), and of one two-thread run.
# Two independent runs are the most a data-parallel run of the same batch can
# reach, so (sum of the pair) / (alone) bounds `--threads 2` / `--threads 1`.
# Median samples/s of steps 21-100 of each run's training.jsonl; ROUNDS
# interleaved rounds (default 4).
#   scripts/bench-two-cores.sh [FUSECAP] [CONFIG]
# Needs data/easy-vqa (README, `data easy-vqa`).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/fusecap}; CONFIG=${2:-configs/scenes-aux.json}
source scripts/training-speed.sh
run() { train_100_steps "$BIN" "$CONFIG" "$@"; }
for round in $(seq "${ROUNDS:-4}"); do
  out=$(mktemp -d)
  run 1 "$out/alone"
  run 1 "$out/pair-a" & run 1 "$out/pair-b" & wait
  run 2 "$out/two"
  alone=$(median_samples_per_sec "$out/alone"); a=$(median_samples_per_sec "$out/pair-a")
  b=$(median_samples_per_sec "$out/pair-b"); two=$(median_samples_per_sec "$out/two")
  awk -v r="$round" -v s="$alone" -v a="$a" -v b="$b" -v t="$two" 'BEGIN {
    printf "round %s  alone %.1f  pair %.1f + %.1f = %.2fx alone  --threads 2 %.1f = %.2fx alone\n", r, s, a, b, (a + b) / s, t, t / s }'
  rm -rf "$out"
done
