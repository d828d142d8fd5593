#!/usr/bin/env python3
"""Accuracy per question template of one question type, from the JSON that
`fusecap eval --json FILE` writes and the manifest it evaluated: colour, shape
and size words become <c>, <s> and <z>.

    scripts/per_template.py runs/eval/eval-scenes-probe-concat.json relation
"""
import collections
import json
import re
import sys

result_path, question_type = sys.argv[1], sys.argv[2]
result = json.load(open(result_path))
manifest = [json.loads(line) for line in open(result["manifest"])]
WORDS = [(r"\b(red|green|blue|yellow|black|gray|teal|brown)\b", "<c>"),
         (r"\b(circle|square|triangle|star|rectangle)s?\b", "<s>"),
         (r"\b(small|large)\b", "<z>")]
scores = collections.defaultdict(list)
for prediction in result["predictions"]:
    record = manifest[int(prediction["source"].rsplit(":", 1)[1]) - 1]
    if record.get("question_type") != question_type:
        continue
    template = record["question"]
    for pattern, placeholder in WORDS:
        template = re.sub(pattern, placeholder, template)
    scores[template].append(prediction["score"])
for template, s in sorted(scores.items(), key=lambda kv: -len(kv[1])):
    print(f"{100 * sum(s) / len(s):5.1f}%  {len(s):5d}  {template}")
