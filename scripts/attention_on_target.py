#!/usr/bin/env python3
"""Where a model's decoder looks when it names an object's colour.

For every "what color is the ...?" question of a synthetic scene set that
names exactly one object of a scene with two or more, runs `fusecap explain`
once per decoder layer and reads, at the first generated token, the
cross-attention mass (mean over heads) on the named object's image token and
on the other objects' tokens. Prints per model and layer: the mean mass on
the target and on the others, how often the target holds the most mass of
any object, and the accuracy when it does and when it does not.

With `--asks where`, the questions are "where is the [size] SHAPE?" instead.

usage: scripts/attention_on_target.py MANIFEST MODEL... [--limit N] [--asks color|where]
  MANIFEST: a `fusecap data synth` manifest (scenes.jsonl beside it), e.g.
  runs/scenes-fresh/manifest.jsonl; every split is read.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

FUSECAP = os.environ.get("FUSECAP", "target/release/fusecap")
SIZES = {"small", "large"}


PREFIXES = {"color": "what color is the ", "where": "where is the "}
QUESTION_TYPES = {"color": "color", "where": "position"}


def named_object(question, objects, prefix=PREFIXES["color"]):
    """The one object that the words of "PREFIX [size] SHAPE?" pick out."""
    suffix = "?"
    if not (question.startswith(prefix) and question.endswith(suffix)):
        return None
    words = question[len(prefix):-len(suffix)].split()
    if not words or words[-1] == "shape" or any(w not in SIZES for w in words[:-1]):
        return None
    shape, sizes = words[-1], set(words[:-1])
    hits = [o for o in objects if o["shape"] == shape and sizes <= {o["size"]}]
    return hits[0] if len(hits) == 1 else None


def token_of(obj, grid):
    row = min(int(obj["cy"] * grid), grid - 1)
    col = min(int(obj["cx"] * grid), grid - 1)
    return row * grid + col


def layer_attention(model, image, question, layer, out):
    subprocess.run(
        [FUSECAP, "explain", image, "--question", question, "--model", model,
         "--layer", str(layer), "--out", out, "-q", "--threads", "1"],
        check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "attention.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--asks", choices=sorted(PREFIXES), default="color")
    args = ap.parse_args()
    root = os.path.dirname(args.manifest)
    with open(os.path.join(root, "scenes.jsonl")) as f:
        scenes = {s["image"]: s["objects"] for s in map(json.loads, f)}
    cases = []
    with open(args.manifest) as f:
        for rec in map(json.loads, f):
            objects = scenes.get(rec["image"], [])
            if rec.get("question_type") != QUESTION_TYPES[args.asks] or len(objects) < 2:
                continue
            target = named_object(rec["question"], objects, PREFIXES[args.asks])
            if target is not None:
                cases.append((rec, target, objects))
    cases = cases[: args.limit]
    print(f"{len(cases)} questions naming one object of a scene with 2+ objects ({args.manifest})")
    print("| model | layer | mass on the target | on the other objects | target holds the most | accuracy then | accuracy otherwise |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            with open(os.path.join(model if os.path.isdir(model) else os.path.join("models", model), "config.json")) as f:
                layers = json.load(f)["decoder_layers"]
            for layer in range(layers):
                on, off, hit, right = 0.0, 0.0, [], []
                for rec, target, objects in cases:
                    att = layer_attention(model, os.path.join(root, rec["image"]), rec["question"], layer, tmp)
                    step = att["steps"][0]
                    grid = att["grid"]
                    mass = {token_of(o, grid): 0.0 for o in objects}
                    for t in mass:
                        mass[t] = step["vision"][t]
                    goal = token_of(target, grid)
                    others = [m for t, m in mass.items() if t != goal]
                    on += mass[goal]
                    off += sum(others)
                    hit.append(mass[goal] > max(others, default=0.0))
                    # The answer's words ("top left") begin the output.
                    words = rec["answer"].split()
                    right.append(att["output"].strip().split()[: len(words)] == words)
                n = len(cases)
                h = [r for r, x in zip(right, hit) if x]
                m = [r for r, x in zip(right, hit) if not x]
                pct = lambda v: f"{100 * sum(v) / len(v):.0f}% (n={len(v)})" if v else "–"
                looks = (on + off) / n >= 0.01  # else "the most" compares rounding noise
                cells = [f"{100 * sum(hit) / n:.0f}%", pct(h), pct(m)] if looks else ["–"] * 3
                print(f"| {os.path.basename(model.rstrip('/'))} | {layer} | {on / n:.3f} | {off / n:.3f} | "
                      + " | ".join(cells) + " |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
