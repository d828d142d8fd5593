#!/bin/bash
# Training throughput for BENCHMARKS.md: 8×8 vs 16×16 patches, --group-size 1 vs 4,
# one thread, each case twice. Needs data/ (scripts/train-shipped-models.sh makes it).
cd "$(dirname "$0")/.."
set -euo pipefail
python3 - <<'PY'
import json
c=json.load(open('configs/scenes-aux.json')); c['patch_size']=8
json.dump(c,open('/tmp/p8.json','w'))
PY
for rep in 1 2; do
for cfg in p8 p16; do for g in 1 4; do
  extra=""; [ $cfg = p8 ] && extra="--config /tmp/p8.json"
  out=/tmp/tp-$cfg-g$g-$rep; rm -rf $out
  target/release/fusecap train --data data/scenes/manifest.jsonl data/easy-vqa/manifest.jsonl \
    --fusion separate --out $out --steps 40 --batch-size 64 --group-size $g $extra \
    --eval-every 1000 --checkpoint-every 1000 --threads 1 -q
  python3 -c "
import json,statistics
r=[json.loads(l) for l in open('$out/training.jsonl')][10:]
print('$cfg g$g rep$rep', round(statistics.median(x['samples_per_sec'] for x in r),1), 'samples/s', round(60*(len(r)-1)/(r[-1]['elapsed_s']-r[0]['elapsed_s']),1), 'steps/min')
"
done; done; done
