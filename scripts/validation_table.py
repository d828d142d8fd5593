#!/usr/bin/env python3
"""Prints a Markdown table of validation accuracy at each evaluated step of
several training runs side by side (their training.jsonl), overall and for
one question type, with the first step at which each run reached 90% and 95%.

  scripts/validation_table.py [--type position] RUN...
"""
import argparse

from tables import pct, validations


def first_step(vals, threshold):
    steps = [s for s in sorted(vals) if vals[s]["val_accuracy"] >= threshold]
    return f"{steps[0]:,}" if steps else "not reached"


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--type", default="position", help="the question type of the second column per run")
parser.add_argument("runs", nargs="+")
args = parser.parse_args()
runs = {run: {r["step"]: r for r in validations(run)} for run in args.runs}
steps = sorted({s for vals in runs.values() for s in vals})
header = ["step"]
for run in args.runs:
    header += [run, f"its {args.type}"]
print("| " + " | ".join(header) + " |")
print("|---" * len(header) + "|")
for step in steps:
    cells = [f"{step:,}"]
    for vals in runs.values():
        r = vals.get(step)
        cells += [pct(r and r["val_accuracy"]), pct(r and r["val_accuracy_by_type"].get(args.type))]
    print("| " + " | ".join(cells) + " |")
for threshold in (0.9, 0.95):
    cells = [f"reached {threshold:.0%} at"]
    for vals in runs.values():
        cells += [first_step(vals, threshold), ""]
    print("| " + " | ".join(cells) + " |")
