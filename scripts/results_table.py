#!/usr/bin/env python3
"""Prints the README's two results tables from what
scripts/evaluate-shipped-models.sh writes to docs/results/
({scenes,easy-vqa}-compare.json, eval-{scenes,scenes-noise,scenes-probe}-FUSION.json)
and the models' training.jsonl."""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "docs/results"
TYPES = ["color", "shape", "size", "count", "exist", "position", "relation"]


def pct(x):
    return f"{100 * x:.1f}%"


def load(path):
    return json.load(open(path))


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
    multi = load(f"{root}/eval-scenes-{f}.json")["binding"]["per_type"]
    conj = load(f"{root}/eval-scenes-probe-{f}.json")["binding"]["split_conjunctions"]
    e = easy[f]
    cells = [label(f), pct(noise["vqa"]["accuracy"]),
             " / ".join(f"{100 * multi[t][1]['accuracy']:.0f}" for t in ("color", "shape", "size")) + "%",
             f"{pct(conj['accuracy'])} (n={conj['n']})",
             f"{pct(e['vqa']['accuracy'])} ({pct(e['vqa_per_type']['shape']['accuracy'])})"]
    print("| " + " | ".join(cells) + " |")
