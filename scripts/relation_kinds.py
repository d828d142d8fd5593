#!/usr/bin/env python3
"""Accuracy of relation questions by relation ("left of", "right of",
"above", "below", "closest to") and by what they ask (colour or shape), one
column per result file that `fusecap eval --json FILE` wrote:

    fusecap eval --model models/scenes-concat --data runs/scenes-fresh/manifest.jsonl \
        --split train --json /tmp/concat.json --quiet
    scripts/relation_kinds.py /tmp/concat.json /tmp/separate.json
"""
import collections
import json
import re
import sys

RELATION = re.compile(r"\b(left of|right of|above|below|closest to)\b")


def by_kind(path):
    result = json.load(open(path))
    manifest = [json.loads(line) for line in open(result["manifest"])]
    scores = collections.defaultdict(list)
    for prediction in result["predictions"]:
        record = manifest[int(prediction["source"].rsplit(":", 1)[1]) - 1]
        if record.get("question_type") != "relation":
            continue
        question = record["question"]
        relation = RELATION.search(question)
        asks = "colour" if question.startswith("what color") else "shape"
        if relation:
            scores[(relation.group(1), asks)].append(prediction["score"])
            scores[(relation.group(1), "both")].append(prediction["score"])
    return scores


if len(sys.argv) < 2:
    sys.exit(__doc__)
columns = [by_kind(path) for path in sys.argv[1:]]
kinds = sorted({kind for column in columns for kind in column})
print("| relation | asks | n | " + " | ".join(sys.argv[1:]) + " |")
print("|---|---|---|" + "---|" * len(columns))
for kind in kinds:
    n = max(len(column.get(kind, [])) for column in columns)
    cells = []
    for column in columns:
        s = column.get(kind, [])
        cells.append(f"{100 * sum(s) / len(s):.1f}%" if s else "–")
    print(f"| {kind[0]} | {kind[1]} | {n} | " + " | ".join(cells) + " |")
