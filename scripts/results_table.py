#!/usr/bin/env python3
"""Prints the README's results tables from docs/results/{easy-vqa,scenes}-compare.json
and docs/results/eval-{scenes,scenes-noise,scenes-probe}-FUSION.json (written by
scripts/evaluate-shipped-models.sh)."""
import json
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "docs/results"
sets = {name: json.load(open(f"{root}/{name}-compare.json")) for name in ("easy-vqa", "scenes")}


def pct(x):
    return f"{100 * x:.1f}%"


def row(model):
    return {m["name"]: m for m in model["models"]}


ev, sc = row(sets["easy-vqa"]), row(sets["scenes"])
ev_types = sorted(next(iter(ev.values()))["vqa_per_type"].keys())
sc_types = sorted(next(iter(sc.values()))["vqa_per_type"].keys())

print(f"easy-VQA test split: {sets['easy-vqa']['questions']} questions, {sets['easy-vqa']['captions']} captions. "
      f"Scenes test split: {sets['scenes']['questions']} questions, {sets['scenes']['captions']} captions.\n")
header = ["model", "parameters", "easy-VQA accuracy"] + [f"easy-VQA {t}" for t in ev_types] + ["easy-VQA caption exact match", "easy-VQA BLEU-4"]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for name, m in ev.items():
    cells = [name, f"{m['parameters']:,}", pct(m["vqa"]["accuracy"])]
    cells += [pct(m["vqa_per_type"][t]["accuracy"]) for t in ev_types]
    cells += [pct(m["caption"]["exact_match"]), f"{m['caption']['bleu'][3]:.3f}"]
    print("| " + " | ".join(cells) + " |")
print()
header = ["model", "scenes accuracy"] + sc_types + ["caption exact match", "BLEU-4", "CIDEr-D", "ROUGE-L"]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for name, m in sc.items():
    cells = [name, pct(m["vqa"]["accuracy"])] + [pct(m["vqa_per_type"][t]["accuracy"]) for t in sc_types]
    c = m["caption"]
    cells += [pct(c["exact_match"]), f"{c['bleu'][3]:.3f}", f"{c['cider_d']:.3f}", f"{c['rouge_l']:.3f}"]
    print("| " + " | ".join(cells) + " |")
print()
header = ["model", "scenes", "noisy background", "colour (2+ objects)", "shape (2+)", "size (2+)", "red and circle on different objects (probe)"]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for name, m in sc.items():
    fusion = m["fusion"]
    plain = json.load(open(f"{root}/eval-scenes-{fusion}.json"))
    noise = json.load(open(f"{root}/eval-scenes-noise-{fusion}.json"))
    multi = plain["binding"]["per_type"]
    conj = json.load(open(f"{root}/eval-scenes-probe-{fusion}.json"))["binding"]["split_conjunctions"]
    cells = [name, pct(plain["vqa"]["accuracy"]), pct(noise["vqa"]["accuracy"])]
    cells += [pct(multi[t][1]["accuracy"]) for t in ("color", "shape", "size")]
    cells += [f"{pct(conj['accuracy'])} (n={conj['n']})"]
    print("| " + " | ".join(cells) + " |")
