#!/usr/bin/env python3
"""The answer prior of easy-VQA's yes/no questions: the accuracy of answering each
question with the majority answer of its template (the question with its colour or
shape word blanked), ignoring the image. The majority is taken on the training split.

    python3 scripts/answer_prior.py data/easy-vqa/manifest.jsonl [--limit N]

--limit N scores the first N records of the test split, as `fusecap eval --limit N`."""
import argparse
import collections
import json
import re

WORDS = re.compile(r"\b(red|green|blue|black|gray|teal|brown|yellow|circle|rectangle|triangle)\b")

parser = argparse.ArgumentParser()
parser.add_argument("manifest")
parser.add_argument("--limit", type=int)
args = parser.parse_args()
records = [json.loads(line) for line in open(args.manifest) if line.strip()]
test = [r for r in records if r.get("split", "train") == "test"][: args.limit]
for qtype in ("yes/no color", "yes/no shape"):
    counts = collections.defaultdict(collections.Counter)
    for r in records:
        if r.get("split", "train") == "train" and r.get("question_type") == qtype:
            counts[WORDS.sub("_", r["question"])][r["answer"]] += 1
    majority = {template: c.most_common(1)[0][0] for template, c in counts.items()}
    scored = [r for r in test if r.get("question_type") == qtype]
    right = sum(majority.get(WORDS.sub("_", r["question"])) == r["answer"] for r in scored)
    print(f"{qtype}: {len(counts)} templates, prior {100 * right / len(scored):.1f}% of {len(scored)} test questions")
