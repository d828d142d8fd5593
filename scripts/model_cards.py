#!/usr/bin/env python3
"""Writes models/scenes-*/README.md from the seed-0 runs that
scripts/train-shipped-models.sh leaves in runs/scenes-FUSION-seed0/
(training.jsonl, train_state.json) and the test-split results that
scripts/evaluate-shipped-models.sh writes to docs/results/.

usage: scripts/model_cards.py [FUSION...]   (default: concat separate gated)"""
import glob
import json
import math
import sys

RESULTS = "docs/results"
FUSION_TEXT = {
    "concat": "one cross-attention per decoder layer over the concatenated [vision; text] memory, with learned modality-type embeddings",
    "separate": "cross-attention to the image, then to the question, each with its own LayerNorm, projections and residual",
    "gated": "as separate, each cross-attention output scaled by a learned tanh(alpha) gate",
}
TYPES = ["color", "shape", "size", "count", "exist", "position", "relation"]


def pct(x):
    return f"{100 * x:.1f}%"


def load(path):
    return json.load(open(path))


def compared(name):
    return {m["fusion"]: m for m in load(f"{RESULTS}/{name}-compare.json")["models"]}


def recipe_config(cfg):
    """The file in configs/ that the model's config.json was trained from: of
    the files whose every field but the fusion has the model's value, the one
    that sets the most fields (scenes-aux.json over scenes-qv2.json, which
    sets a subset of them)."""
    matches = [
        (len(recipe), path)
        for path in sorted(glob.glob("configs/*.json"))
        for recipe in [load(path)]
        if all(cfg.get(k) == v for k, v in recipe.items() if k != "fusion")
    ]
    if not matches:
        sys.exit(f"no file in configs/ matches the config of this model (fusion aside): {cfg}")
    return max(matches)[1]


def first_step_at(log, level):
    return next((r["step"] for r in log if r.get("val_accuracy", 0) >= level), None)


def card(fusion, scenes, easy):
    run = f"runs/scenes-{fusion}-seed0"
    cfg = load(f"models/scenes-{fusion}/config.json")
    opts = load(f"{run}/train_state.json")["options"]
    log = [json.loads(line) for line in open(f"{run}/training.jsonl")]
    vals = [r for r in log if "val_accuracy" in r]
    plain = load(f"{RESULTS}/eval-scenes-{fusion}.json")
    noise = load(f"{RESULTS}/eval-scenes-noise-{fusion}.json")
    binding = plain["binding"]
    multi = {t: binding["per_type"][t][1] for t in TYPES if binding["per_type"][t][1]["n"]}
    probe = load(f"{RESULTS}/eval-scenes-probe-{fusion}.json")
    conj = probe["binding"]["split_conjunctions"]
    at90 = first_step_at(vals, 0.9)
    sc, ev = scenes[fusion], easy[fusion]
    recipe = recipe_config(cfg)
    auxiliary = [name for name in ("attribute_loss", "mention_loss") if cfg.get(name)]
    lines = [
        f"# scenes-{fusion}",
        "",
        f"fusecap model with **{fusion}** fusion: {FUSION_TEXT[fusion]}"
        + (f", gates initialised at alpha = {cfg['gate_init']:g} (tanh {math.tanh(cfg['gate_init']):.2f})" if fusion == "gated" else "")
        + ". It captions images of flat shapes and answers questions about them.",
        f"Trained here from a random initialisation by one `fusecap train` command with `{recipe}`.",
        "",
        "## Reproduce",
        "```sh",
        "fusecap data easy-vqa --from easy_vqa-1.0-py3-none-any.whl --out data/easy-vqa   # pip download easy-vqa==1.0 --no-deps",
        f"fusecap train --config {recipe} --fusion {fusion} \\",
        f"    --data data/easy-vqa/manifest.jsonl --stream-share {opts['stream']['share']:g} \\",
        f"    --steps {opts['steps']} --warmup {opts['warmup_steps']} --eval-every {opts['eval_every']} "
        f"--checkpoint-every {opts['checkpoint_every']} --seed {opts['seed']} --out runs/scenes-{fusion}-seed0",
        "```",
        f"`CONFIG={recipe} STEPS={opts['steps']} FUSIONS={fusion} scripts/train-shipped-models.sh` runs it and copies the files a user needs here.",
        "",
        "## Model",
        f"- {sc['parameters']:,} parameters, of which {sc['cross_attention_parameters']:,} in cross-attention; stored as f16.",
        f"- Vision: {cfg['patch_size']}×{cfg['patch_size']} patches of {cfg['image_size']}×{cfg['image_size']} images "
        f"(a 3×3 token grid, aligned with the scenes' 3×3 grid), each pixel's column and row as two extra input channels, "
        f"{cfg['vision_layers']} layers, the last {cfg.get('question_vision_layers', 0)} of which also attend to the question.",
        f"- d {cfg['d_model']}, {cfg['n_heads']} heads, FFN {cfg['d_ff']} ({'ReLU' if cfg['activation'] == 'relu' else 'GELU'}), "
        f"{cfg['text_layers']} text and {cfg['decoder_layers']} decoder layers, a word-level tokenizer.",
        "",
        "## Training",
        f"- {opts['steps']:,} steps of {opts['batch_size']} examples: easy-VQA's training split (questions and captions) and, "
        f"for {pct(opts['stream']['share'])} of every batch, multi-object scenes drawn afresh for each step "
        "(no scene seen twice; white, tinted, gradient and noisy backgrounds; questions balanced over type, template and answer).",
        *(
            [f"- Auxiliary losses on the streamed scenes (docs/design.md): "
             + ", ".join(f"`{name}` {cfg[name]:g}" for name in auxiliary)
             + (f", `mention_target` {cfg['mention_target']}" if cfg.get("mention_target") else "")
             + "."]
            if auxiliary else []
        ),
        f"- AdamW (weight decay {opts['weight_decay']:g}), warm-up {opts['warmup_steps']} steps, then cosine decay from "
        f"{opts['lr']:g} to {opts['min_lr_ratio']:g}× that; gradient clipping at {opts['clip_norm']:g}.",
        f"- Validation ({opts['val_examples']} held-out examples, half of them scenes from another stream) "
        + (f"reached 90% at step {at90:,}" if at90 else "never reached 90%")
        + f"; it ended at {pct(vals[-1]['val_accuracy'])}.",
        f"- Final training loss {log[-1]['loss']:.3f}. `training.jsonl` holds every 50th step and every validation.",
        "- BENCHMARKS.md has the training speed on the 2-core machine.",
        "",
        "## Evaluation (held-out test splits, evaluated once)",
        "`scripts/evaluate-shipped-models.sh` (`fusecap compare` and `fusecap eval --split test`). "
        "Accuracy is exact match after VQA answer normalisation.",
        "",
        "| test set | questions | accuracy | per type | caption exact match |",
        "|---|---|---|---|---|",
    ]
    for name, m in (("scenes", sc), ("scenes, noisy background", noise), ("easy-VQA", ev)):
        types = ", ".join(f"{t} {pct(v['accuracy'])}" for t, v in sorted(m["vqa_per_type"].items()))
        lines.append(f"| {name} | {m['vqa']['n']:,} | {pct(m['vqa']['accuracy'])} | {types} | {pct(m['caption']['exact_match'])} |")
    lines += [
        "",
        "Binding, scenes test split, questions about scenes of two or more objects: "
        + ", ".join(f"{t} {pct(v['accuracy'])} (n={v['n']})" for t, v in multi.items())
        + ". \"Is there a red circle?\" with red and circle on different objects, on the binding probe "
        f"(`fusecap data synth --out data/scenes-probe --count 3000 --seed 13 --balanced --test-fraction 1`): {pct(conj['accuracy'])} (n={conj['n']}).",
    ]
    if sc.get("gate_values"):
        gates = "; ".join(f"layer {g['layer']}: vision {g['vision']:.3f}, text {g['text']:.3f}" for g in sc["gate_values"])
        lines += ["", f"Learned gates tanh(alpha): {gates}."]
    weakest = min(sc["vqa_per_type"].items(), key=lambda kv: kv[1]["accuracy"])
    lines += [
        "",
        "## Limits",
        f"- The weakest scene question type is {weakest[0]} ({pct(weakest[1]['accuracy'])}).",
        f"- easy-VQA: {pct(ev['vqa']['accuracy'])}; shape questions are the hardest at 48×48 pixels "
        f"(shape {pct(ev['vqa_per_type']['shape']['accuracy'])}, yes/no shape {pct(ev['vqa_per_type']['yes/no shape']['accuracy'])}).",
        f"- easy-VQA's yes/no questions: colour {pct(ev['vqa_per_type']['yes/no color']['accuracy'])} and shape "
        f"{pct(ev['vqa_per_type']['yes/no shape']['accuracy'])}, against 88.1% and 67.6% from the question's wording alone "
        "(`scripts/answer_prior.py`, docs/findings.md).",
        "- Trained on small synthetic images of flat shapes: it knows nothing about photographs.",
        "",
    ]
    return "\n".join(lines)


scenes, easy = compared("scenes"), compared("easy-vqa")
for fusion in sys.argv[1:] or ("concat", "separate", "gated"):
    open(f"models/scenes-{fusion}/README.md", "w").write(card(fusion, scenes, easy))
    print(f"wrote models/scenes-{fusion}/README.md")
