#!/usr/bin/env python3
"""Prints the README's seed tables: for every run of the shipped recipe
(runs/scenes-FUSION-seedSEED), its test accuracy per scene question type and
on easy-VQA (docs/results/seeds/, written by scripts/evaluate-seeds.sh), its
last validation accuracy and the first step at which validation reached 90%
(its training.jsonl); then, where evaluated, the noisy background and
binding: colour, shape and size questions about scenes of 2+ objects, and
the probe's questions whose colour and shape sit on different objects. NAME and OUT as for scripts/evaluate-seeds.sh:
  NAME=pretrained OUT=docs/results/pretrained-seeds scripts/seeds_table.py"""
import json
import os

TYPES = ["color", "shape", "size", "count", "exist", "position", "relation"]
NAME = os.environ.get("NAME", "scenes")
RESULTS = os.environ.get("OUT", "docs/results/seeds")


def pct(x):
    return f"{100 * x:.1f}%"


def validations(run):
    with open(f"{run}/training.jsonl") as log:
        return [r for r in map(json.loads, log) if "val_accuracy" in r]


print("| fusion | seed | scenes | " + " | ".join(TYPES) + " | easy-VQA | last validation | validation 90% at step |")
print("|---" * (len(TYPES) + 6) + "|")
for fusion in ("concat", "separate", "gated"):
    for seed in (0, 1):
        run = f"runs/{NAME}-{fusion}-seed{seed}"
        scenes_file = f"{RESULTS}/eval-scenes-{fusion}-seed{seed}.json"
        if not os.path.exists(scenes_file):
            continue
        scenes = json.load(open(scenes_file))
        easy = json.load(open(f"{RESULTS}/eval-easy-vqa-{fusion}-seed{seed}.json"))
        vals = validations(run)
        reached = next((r["step"] for r in vals if r["val_accuracy"] >= 0.9), None)
        cells = [fusion, str(seed), pct(scenes["vqa"]["accuracy"])]
        cells += [pct(scenes["vqa_per_type"][t]["accuracy"]) for t in TYPES]
        cells += [pct(easy["vqa"]["accuracy"]), pct(vals[-1]["val_accuracy"]),
                  f"{reached:,}" if reached else "never"]
        print("| " + " | ".join(cells) + " |")


print()
print("| fusion | seed | noisy background (plain) | colour / shape / size, 2+ objects | red and circle on different objects (probe) |")
print("|---|---|---|---|---|")
for fusion in ("concat", "separate", "gated"):
    for seed in (0, 1):
        files = [f"{RESULTS}/eval-{data}-{fusion}-seed{seed}.json"
                 for data in ("scenes", "scenes-noise", "scenes-probe")]
        if not all(os.path.exists(f) for f in files):
            continue
        plain, noise, probe = (json.load(open(f)) for f in files)
        multi = plain["binding"]["per_type"]
        conj = probe["binding"]["split_conjunctions"]
        print(f"| {fusion} | {seed} | {pct(noise['vqa']['accuracy'])} ({pct(plain['vqa']['accuracy'])}) | "
              + " / ".join(f"{100 * multi[t][1]['accuracy']:.0f}" for t in ("color", "shape", "size"))
              + f"% | {pct(conj['accuracy'])} (n={conj['n']}) |")
