#!/usr/bin/env python3
"""Prints the README's two results tables from what
scripts/evaluate-shipped-models.sh writes to docs/results/
({scenes,easy-vqa}-compare.json, eval-{scenes,scenes-noise,scenes-probe}-FUSION.json)
and the models' training.jsonl."""
import os
import sys

from tables import TYPES, load, multi_object_cell, pct, probe_cell

root = sys.argv[1] if len(sys.argv) > 1 else "docs/results"


def by_key(name):
    """The compared models by the key evaluate-shipped-models.sh names their
    files with: the folder's name without "scenes-"."""
    models = load(f"{root}/{name}-compare.json")["models"]
    return {os.path.basename(m["path"].rstrip("/")).removeprefix("scenes-"): m for m in models}


def label(key):
    return f"scenes-{key}" if key in ("concat", "separate", "gated") else key


scenes, easy = by_key("scenes"), by_key("easy-vqa")
fusions = list(scenes)
print(f"Scenes test split ({scenes[fusions[0]]['vqa']['n']:,} questions, 300 captions):\n")
print("| model | all | " + " | ".join(TYPES) + " | caption exact match |")
print("|---" * (len(TYPES) + 3) + "|")
for f in fusions:
    m = scenes[f]
    cells = [label(f), pct(m["vqa"]["accuracy"])] + [pct(m["vqa_per_type"][t]["accuracy"]) for t in TYPES]
    print("| " + " | ".join(cells + [pct(m["caption"]["exact_match"])]) + " |")
print()
print("| model | noisy background | colour / shape / size, 2+ objects | red and circle on different objects (probe) | easy-VQA (shape) |")
print("|---|---|---|---|---|")
for f in fusions:
    noise = load(f"{root}/eval-scenes-noise-{f}.json")
    e = easy[f]
    cells = [label(f), pct(noise["vqa"]["accuracy"]),
             multi_object_cell(load(f"{root}/eval-scenes-{f}.json")),
             probe_cell(load(f"{root}/eval-scenes-probe-{f}.json")),
             f"{pct(e['vqa']['accuracy'])} ({pct(e['vqa_per_type']['shape']['accuracy'])})"]
    print("| " + " | ".join(cells) + " |")
