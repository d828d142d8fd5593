#!/usr/bin/env python3
"""Prints an eval JSON (`fusecap eval --json`) without its per-record lists:
   python3 scripts/eval_summary.py FULL.json > SUMMARY.json"""
import json
import sys

report = json.load(open(sys.argv[1]))
for key in ("predictions", "worst_answers", "worst_captions"):
    report.pop(key, None)
print(json.dumps(report, indent=2))
