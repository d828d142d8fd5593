# Sourced by the training-speed scripts: one short training run of the
# shipped recipe's flags, and the median samples/s of its steps 21-100.
# Needs data/easy-vqa (README, `data easy-vqa`).

# train_100_steps FUSECAP CONFIG THREADS OUT
train_100_steps() {
  "$1" train --config "$2" --fusion concat --data data/easy-vqa/manifest.jsonl \
    --stream-share 0.5 --steps 100 --warmup 200 --eval-every 100000 --checkpoint-every 100000 \
    --seed 0 --out "$4" --threads "$3" --quiet >/dev/null 2>&1
}

# median_samples_per_sec OUT
median_samples_per_sec() {
  sed -n '21,100p' "$1/training.jsonl" | grep -o '"samples_per_sec":[0-9.]*' | cut -d: -f2 \
    | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}
