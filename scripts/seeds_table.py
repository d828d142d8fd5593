#!/usr/bin/env python3
"""Prints the README's seed tables: for every run of a shipped recipe
(runs/NAME-FUSION-seedSEED) evaluated by scripts/evaluate-seeds.sh, its test
accuracy on the scenes (overall, per attribute and relation), on the noisy
background, on colour / shape / size questions about scenes of 2+ objects and
on easy-VQA, and the first step at which its validation reached 90% (its
training.jsonl); then the other scene types, the binding probe ("is there a
red circle?" with red and circle on different objects) and the last
validation. NAME and OUT as for scripts/evaluate-seeds.sh:
  NAME=pretrained OUT=docs/results/pretrained-seeds scripts/seeds_table.py"""
import os

from tables import load, multi_object_cell, pct, probe_cell, validations

NAME = os.environ.get("NAME", "scenes")
RESULTS = os.environ.get("OUT", "docs/results/seeds")


def evaluated_runs():
    """(fusion, seed, {data set: summary}, validation records) of every run
    with all four summaries."""
    for fusion in ("concat", "separate", "gated"):
        for seed in (0, 1):
            files = {data: f"{RESULTS}/eval-{data}-{fusion}-seed{seed}.json"
                     for data in ("scenes", "scenes-noise", "scenes-probe", "easy-vqa")}
            if all(os.path.exists(f) for f in files.values()):
                yield (fusion, seed, {data: load(f) for data, f in files.items()},
                       validations(f"runs/{NAME}-{fusion}-seed{seed}"))


runs = list(evaluated_runs())
print("| fusion | seed | scenes | colour | shape | size | relation | noisy | colour / shape / size, 2+ objects | easy-VQA | validation 90% at step |")
print("|---" * 11 + "|")
for fusion, seed, r, vals in runs:
    types = r["scenes"]["vqa_per_type"]
    reached = next((v["step"] for v in vals if v["val_accuracy"] >= 0.9), None)
    cells = [fusion, str(seed), pct(r["scenes"]["vqa"]["accuracy"])]
    cells += [pct(types[t]["accuracy"]) for t in ("color", "shape", "size", "relation")]
    cells += [pct(r["scenes-noise"]["vqa"]["accuracy"]), multi_object_cell(r["scenes"]),
              pct(r["easy-vqa"]["vqa"]["accuracy"]), f"{reached:,}" if reached else "never"]
    print("| " + " | ".join(cells) + " |")

print()
print("| fusion | seed | count | exist | position | red and circle on different objects (probe) | last validation |")
print("|---" * 7 + "|")
for fusion, seed, r, vals in runs:
    types = r["scenes"]["vqa_per_type"]
    last = vals[-1]["val_accuracy"]
    cells = [fusion, str(seed)] + [pct(types[t]["accuracy"]) for t in ("count", "exist", "position")]
    print("| " + " | ".join(cells + [probe_cell(r["scenes-probe"]), pct(last)]) + " |")
