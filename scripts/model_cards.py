#!/usr/bin/env python3
"""Writes models/scenes-*/README.md from the model directories (config.json,
training.jsonl), the options of the runs in runs/ that
scripts/train-shipped-models.sh leaves (train_state.json), and the evaluation
that scripts/evaluate-shipped-models.sh writes (docs/results/*-compare.json,
runs/eval-*-scenes.json)."""
import json
import math

SETS = ("easy-vqa", "scenes", "scenes-noise")
results = {name: {m["fusion"]: m for m in json.load(open(f"docs/results/{name}-compare.json"))["models"]}
           for name in SETS}

FUSION_TEXT = {
    "concat": "one cross-attention per decoder layer over the concatenated [vision; text] memory, with learned modality-type embeddings",
    "separate": "cross-attention to the image, then to the question, each with its own LayerNorm, projections and residual",
    "gated": "as separate, each cross-attention output scaled by a learned tanh(alpha) gate",
}


def pct(x):
    return f"{100 * x:.1f}%"


def command(fusion, o):
    return [f"fusecap train --config configs/scenes.json --fusion {fusion} \\",
            f"    --data data/easy-vqa/manifest.jsonl --stream-share {o['stream']['share']:g} \\",
            f"    --steps {o['steps']} --warmup {o['warmup_steps']} --eval-every {o['eval_every']} "
            f"--checkpoint-every {o['checkpoint_every']} --seed {o['seed']} --out runs/scenes-{fusion}-seed{o['seed']}"]


for fusion in ("concat", "separate", "gated"):
    directory = f"models/scenes-{fusion}"
    cfg = json.load(open(f"{directory}/config.json"))
    log = [json.loads(line) for line in open(f"{directory}/training.jsonl")]
    opts = json.load(open(f"runs/scenes-{fusion}-seed0/train_state.json"))["options"]
    binding = json.load(open(f"runs/eval-{fusion}-scenes.json"))["binding"]
    last, vals = log[-1], [r for r in log if "val_accuracy" in r]
    ev, sc, nz = (results[name][fusion] for name in SETS)
    lines = [
        f"# scenes-{fusion}",
        "",
        f"fusecap model with **{fusion}** fusion: {FUSION_TEXT[fusion]}"
        + (f", initialised at alpha = {cfg.get('gate_init', 0):g} (gate {math.tanh(cfg.get('gate_init', 0)):.2f})" if fusion == "gated" else "") + ".",
        "Trained here, from a random initialisation, by one `fusecap train` command that differs from the other two shipped models' only in `--fusion`.",
        "",
        "## Reproduce",
        "```sh",
        "scripts/train-shipped-models.sh   # the data, then this command for each fusion:",
        *command(fusion, opts),
        "```",
        "The data: easy-VQA's training split (`fusecap data easy-vqa --from easy_vqa-1.0-py3-none-any.whl --out data/easy-vqa`, "
        "4,000 train / 1,000 test images, official split; 5% of the training images held out for validation), and, for half of every batch, "
        "multi-object scenes generated afresh for each step from the seed (white, tinted, gradient and noisy backgrounds; "
        "questions balanced over type, template and answer). No scene is seen twice.",
        "",
        "## Model",
        f"- {ev['parameters']:,} parameters, of which {ev['cross_attention_parameters']:,} in cross-attention; stored as f16.",
        f"- ViT with {cfg['patch_size']}×{cfg['patch_size']} patches on {cfg['image_size']}×{cfg['image_size']} images "
        f"({cfg['image_size'] // cfg['patch_size']}×{cfg['image_size'] // cfg['patch_size']} tokens, one per cell of the scenes' grid), "
        f"{cfg.get('vision_positions', 'learned')} positions, d {cfg['d_model']}, {cfg['n_heads']} heads, FFN {cfg['d_ff']}, "
        f"{cfg['vision_layers']} vision / {cfg['text_layers']} text / {cfg['decoder_layers']} decoder layers, word-level tokenizer.",
        "",
        "## Training",
        f"- {last['step']:,} steps of {opts['batch_size']} examples, AdamW (weight decay {opts['weight_decay']:g}), warm-up {opts['warmup_steps']} steps "
        f"then cosine decay from {opts['lr']:g}, gradient clipping at {opts['clip_norm']:g}.",
        f"- Wall time {last['elapsed_s'] / 60:.0f} minutes on a 2-core AMD EPYC without GPU, both cores "
        f"(`--threads 2`, median {sorted(r['samples_per_sec'] for r in log)[len(log) // 2]:.0f} samples/s). Final training loss {last['loss']:.3f}.",
        "- Validation accuracy (greedy exact match on 256 streamed scene questions and 256 held-out easy-VQA ones) by step: "
        + ", ".join(f"{r['step']}: {pct(r['val_accuracy'])}" for r in vals) + ".",
        "",
        "## Evaluation (test splits, evaluated once, never trained on)",
        "`scripts/evaluate-shipped-models.sh` (`fusecap compare --fusion all --data data/<set>/manifest.jsonl --split test`, "
        "and `fusecap eval` for the accuracy by object count). Accuracy is exact match after VQA answer normalisation.",
        "",
        "| test set | VQA accuracy | per question type | caption exact match | CIDEr-D |",
        "|---|---|---|---|---|",
    ]
    for name, m in (("easy-VQA", ev), ("scenes", sc), ("scenes, noise background", nz)):
        types = ", ".join(f"{t} {pct(v['accuracy'])}" for t, v in sorted(m["vqa_per_type"].items()))
        c = m["caption"]
        lines.append(f"| {name} | {pct(m['vqa']['accuracy'])} (n={m['vqa']['n']}) | {types} | {pct(c['exact_match'])} | {c['cider_d']:.3f} |")
    several = {t: v[1] for t, v in binding["per_type"].items()}
    lines += [
        "",
        "In scenes of two or more objects: "
        + ", ".join(f"{t} {pct(v['accuracy'])} (n={v['n']})" for t, v in sorted(several.items()) if v["n"])
        + f". \"Is there a red circle?\" with the colour and the shape on different objects: {pct(binding['split_conjunctions']['accuracy'])} "
        f"(n={binding['split_conjunctions']['n']}).",
    ]
    if sc.get("gate_values"):
        gates = "; ".join(f"layer {g['layer']}: vision {g['vision']:.3f}, text {g['text']:.3f}" for g in sc["gate_values"])
        lines += ["", f"Learned gates tanh(alpha): {gates}."]
    lines += [
        "",
        "## Limits",
        "- One seed. The scene questions of two or more objects, position and relation questions are far from solved; "
        "see the README's results and [docs/findings.md](../../docs/findings.md).",
        "- Trained on 48×48 synthetic images of flat shapes: it knows nothing about photographs.",
        "",
    ]
    open(f"{directory}/README.md", "w").write("\n".join(lines))
    print(f"wrote {directory}/README.md")
