#!/usr/bin/env bash
# fusecap against the PyTorch reference (benches/torch_reference.py), on one
# random model of Config::small (`fusecap init --size small`), at 1 and 2
# threads, interleaved for ROUNDS rounds. Writes runs/bench-vs-torch/:
# torch-tT.jsonl (torch_reference.py time), fusecap-tT.txt (benches/decode.rs)
# and train-tT.txt (median samples/s of steps 11-80 of `fusecap train`).
# usage: PYTHON=~/torchenv/bin/python scripts/bench-vs-torch.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
PYTHON=${PYTHON:-python3}
FUSECAP=${FUSECAP:-target/release/fusecap}
out=runs/bench-vs-torch
model=runs/bench-small-concat
mkdir -p "$out"
cargo bench --bench decode --no-run -q
[ -d "$model" ] || $FUSECAP init --size small --fusion concat --out "$model" --seed 0 --quiet
for round in $(seq "$ROUNDS"); do
  for t in 1 2; do
    echo "round $round threads $t load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/log"
    "$PYTHON" benches/torch_reference.py time --threads "$t" --reps 10 --models "$model" \
      >> "$out/torch-t$t.jsonl"
    FUSECAP_BENCH_THREADS=$t FUSECAP_BENCH_REPS=10 cargo bench --bench decode -q \
      >> "$out/fusecap-t$t.txt" 2>> "$out/log"
    tmp=$(mktemp -d)
    $FUSECAP train --data data/easy-vqa/manifest.jsonl --fusion concat --config "$model/config.json" \
      --out "$tmp/m" --steps 80 --batch-size 64 --eval-every 1000 --checkpoint-every 1000 -q --threads "$t"
    python3 -c 'import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(round(statistics.median(r["samples_per_sec"] for r in rows if r["step"] > 10), 1))' \
      "$tmp/m/training.jsonl" >> "$out/train-t$t.txt"
    rm -rf "$tmp"
  done
done
