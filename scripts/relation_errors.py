#!/usr/bin/env python3
"""Where the wrong answers to relation questions come from, per relation and
number of objects in the scene: the reference object's own colour or shape
(the object the question names), the right object's rank among the others
by distance to the reference, or no object of the scene. One table per
result file that `fusecap eval --json FILE` wrote on a `fusecap data synth`
manifest (its scenes.jsonl is read beside it):

    fusecap eval --model models/scenes-concat --data runs/scenes-fresh/manifest.jsonl \
        --split train --json /tmp/concat.json --quiet
    scripts/relation_errors.py /tmp/concat.json
"""
import collections
import json
import os
import re
import sys

RELATION = re.compile(r"\b(left of|right of|above|below|closest to)\b")
SIZES = ("small", "large")


def reference(objects, words):
    """The one object whose colour, shape and size agree with every such word
    after the relation (relation questions name their reference by
    attributes only, never by place)."""
    def agrees(o):
        named = [w for w in words if w in SIZES or w in COLOURS or w in SHAPES]
        return all(o["size"] == w or o["color"] == w or o["shape"] == w for w in named)
    found = [o for o in objects if agrees(o)]
    return found[0] if len(found) == 1 else None


def distance(a, b):
    return (a["row"] - b["row"]) ** 2 + (a["col"] - b["col"]) ** 2


def sources(path):
    result = json.load(open(path))
    folder = os.path.dirname(result["manifest"])
    manifest = [json.loads(line) for line in open(result["manifest"])]
    scenes = {}
    for line in open(os.path.join(folder, "scenes.jsonl")):
        scene = json.loads(line)
        scenes[scene["image"]] = scene["objects"]
    table = collections.defaultdict(collections.Counter)
    for prediction in result["predictions"]:
        record = manifest[int(prediction["source"].rsplit(":", 1)[1]) - 1]
        question = record.get("question", "")
        relation = RELATION.search(question)
        if record.get("question_type") != "relation" or not relation:
            continue
        objects = scenes[record["image"]]
        key = (relation.group(1), len(objects))
        if prediction["score"] == 1.0:
            table[key]["right"] += 1
            continue
        asked = "color" if question.startswith("what color") else "shape"
        ref = reference(objects, question[relation.end():].rstrip("?").split())
        answer = prediction["output"]
        if ref is not None and ref[asked] == answer:
            table[key]["the reference's"] += 1
        elif any(o[asked] == answer for o in objects):
            table[key]["another object's"] += 1
        else:
            table[key]["no object's"] += 1
    return table


COLOURS = {"red", "green", "blue", "yellow", "black", "gray", "teal", "brown"}
SHAPES = {"circle", "square", "triangle", "star", "rectangle"}
KINDS = ["right", "the reference's", "another object's", "no object's"]

if len(sys.argv) < 2:
    sys.exit(__doc__)
for path in sys.argv[1:]:
    table = sources(path)
    print(f"\n{path}\n")
    print("| relation | objects | n | right | wrong: " + " | ".join(KINDS[1:]) + " |")
    print("|---|---|---|---|" + "---|" * (len(KINDS) - 1))
    for key in sorted(table):
        counts = table[key]
        n = sum(counts.values())
        print(f"| {key[0]} | {key[1]} | {n} | " + " | ".join(str(counts[k]) for k in KINDS) + " |")
