#!/usr/bin/env python3
"""Prints the README's seed tables: for every run of the shipped recipe
(runs/scenes-FUSION-seedSEED), its test accuracy per scene question type and
on easy-VQA (docs/results/seeds/, written by scripts/evaluate-seeds.sh), its
last validation accuracy and the first step at which validation reached 90%
(its training.jsonl); then, where evaluated, the noisy background and
binding: colour, shape and size questions about scenes of 2+ objects, and
the probe's questions whose colour and shape sit on different objects. NAME and OUT as for scripts/evaluate-seeds.sh:
  NAME=pretrained OUT=docs/results/pretrained-seeds scripts/seeds_table.py"""
import os

from tables import TYPES, load, multi_object_cell, pct, probe_cell, validations

NAME = os.environ.get("NAME", "scenes")
RESULTS = os.environ.get("OUT", "docs/results/seeds")


print("| fusion | seed | scenes | " + " | ".join(TYPES) + " | easy-VQA | last validation | validation 90% at step |")
print("|---" * (len(TYPES) + 6) + "|")
for fusion in ("concat", "separate", "gated"):
    for seed in (0, 1):
        run = f"runs/{NAME}-{fusion}-seed{seed}"
        scenes_file = f"{RESULTS}/eval-scenes-{fusion}-seed{seed}.json"
        if not os.path.exists(scenes_file):
            continue
        scenes = load(scenes_file)
        easy = load(f"{RESULTS}/eval-easy-vqa-{fusion}-seed{seed}.json")
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
        plain, noise, probe = (load(f) for f in files)
        print(f"| {fusion} | {seed} | {pct(noise['vqa']['accuracy'])} ({pct(plain['vqa']['accuracy'])}) | "
              f"{multi_object_cell(plain)} | {probe_cell(probe)} |")
