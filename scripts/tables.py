"""What the table scripts share: the scene question types, percentages and
the binding cells read from `fusecap eval --json` summaries."""
import json
import sys

sys.dont_write_bytecode = True

TYPES = ["color", "shape", "size", "count", "exist", "position", "relation"]


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def load(path):
    with open(path) as f:
        return json.load(f)


def validations(run):
    """The validation records of a run's training.jsonl, in step order."""
    with open(f"{run}/training.jsonl") as log:
        return [r for r in map(json.loads, log) if "val_accuracy" in r]


def multi_object_cell(plain):
    """Colour / shape / size accuracy on scenes of 2+ objects, as "98 / 99 / 100%"."""
    multi = plain["binding"]["per_type"]
    return " / ".join(f"{100 * multi[t][1]['accuracy']:.0f}" for t in ("color", "shape", "size")) + "%"


def probe_cell(probe):
    """"Is there a red circle?" with red and circle on different objects."""
    conj = probe["binding"]["split_conjunctions"]
    return f"{pct(conj['accuracy'])} (n={conj['n']})"
