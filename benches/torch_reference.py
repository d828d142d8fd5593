#!/usr/bin/env python3
"""A PyTorch re-implementation of fusecap's model, for parity and speed comparison.

Optional: fusecap's build and tests never need Python or this file. It exists so
that fusecap's outputs can be checked against an independent implementation and
its speed compared with PyTorch's on the same architecture and weights.

Subcommands (run from anywhere; paths default to this repository):

  load DIR     Read DIR/config.json, DIR/model.safetensors (f16 or f32, loaded
               as f32) and DIR/tokenizer.json into an equivalent torch module.
               The torch parameter names are exactly the tensor names in the
               file (the Rust VarBuilder paths, e.g. `decoder.layers.0.
               cross_attn.sink_k`), and the two name sets are compared both
               ways: a tensor missing from the file, a tensor the module does
               not use, or a shape mismatch stops it with a message listing
               every problem. All three fusions, relu/gelu, learned,
               sin-cos-2d and coordinate positions, the stem norm, sinks, text
               cross-attention and question-conditioning layers are
               implemented; the conv stem and a pretrained `vision_encoder`
               are refused by name.
  parity       For each model (default: the three shipped ones) and every image
               in samples/*.png, decode in torch and compare with
               `target/release/fusecap caption ... --format jsonl` and with
               `fusecap ask IMG --questions samples/questions.txt --format jsonl`,
               greedy and beam 3 (`--beams 1 3`). Text must be identical and
               |logprob difference| < 1e-3 (`--tolerance`); prints a table and
               exits 1 on any mismatch.
  time         Times torch only, one JSON line per case: ms per image (median
               over --reps after --warmup) to encode a random image and decode
               exactly 20 new tokens (EOS forbidden before that, as fusecap's
               benches/decode.rs does with min_new_tokens) greedily and with 3
               beams, at batch 1 and 32; and a training step at batch 64
               (forward, token cross-entropy, backward, clip to norm 1, AdamW
               as train.rs sets it) as samples/s, on random 8-token questions
               and 16-token targets (fusecap's training.jsonl samples/s also
               pays for loading data). The decoding cases' text input is the
               caption prompt.

Install (any virtual environment; the Rust build needs none of it):

    python3 -m venv ~/torchenv
    ~/torchenv/bin/pip install torch numpy safetensors

Commands (the release binary must exist: `cargo build --release`):

    ~/torchenv/bin/python benches/torch_reference.py load runs/models/scenes-gated
    ~/torchenv/bin/python benches/torch_reference.py parity --threads 1
    ~/torchenv/bin/python benches/torch_reference.py time --threads 1 --reps 15 --warmup 2 > torch.jsonl

`--threads N` (before or after the subcommand) sets torch.set_num_threads(N)
and set_num_interop_threads(1); `parity` passes it on to fusecap (default 1).
`--models DIR...` replaces the three from-scratch models. `--device cuda` runs torch on a
GPU (written for, not yet tried on one).

How it mirrors fusecap (src/model/*.rs, src/generate/*.rs, src/data/image.rs):
pre-LN blocks, LayerNorm eps 1e-5, bias-free attention and feed-forward
projections (only the patch embedding has a bias), masked keys biased by -1e9
and rows with no valid key zeroed, attention sinks appended after the keys,
the LM head tied to the decoder's token embeddings, cross-attention keys/values
projected once per input and shared by all beams of an input (their queries
folded into the query axis, as `Attention::attend` does), a self-attention KV
cache grown by concatenation. Images are decoded by a small PNG reader (8-bit
RGB/RGBA, what samples/ holds) and resized by a transcription of the `image`
crate's Triangle filter (vertical pass kept in f32, then horizontal, rounded
to u8). The text-encoder input is the question as typed (`ask`) or the
config's caption_prompt (`caption`), tokenised as tokenizer.rs does: special
tokens written in the text and unknown words become [UNK].
Beam search is a vectorised transcription of src/generate/beam.rs: same
candidate order (score, then beam, then token), EOS only from the top K,
early stopping at K finished hypotheses, length-normalised ranking.
Not implemented: sampling, --no-repeat-ngram, --repetition-penalty.
"""
import argparse
import copy
import json
import re
import statistics
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

REPO = Path(__file__).resolve().parent.parent
# One from-scratch model per fusion: the shipped default, and the separate and
# gated models that scripts/train-shipped-models.sh writes to runs/models.
FROM_SCRATCH = [REPO / "models" / "scenes-concat"] + [REPO / "runs" / "models" / f"scenes-{f}" for f in ("separate", "gated")]
MASKED = -1e9  # the additive bias of a masked key (attention.rs)
LN_EPS = 1e-5  # blocks.rs
NUM_SPECIALS = 4  # [PAD] [BOS] [EOS] [UNK] are ids 0..3 (tokenizer.rs)

# Fields older model directories lack, with the defaults config.rs gives them.
CONFIG_DEFAULTS = dict(vision_stem="patch", vision_positions="learned", vision_stem_norm=False,
                       cross_attention_sink=False, text_cross_attention=False,
                       question_vision_layers=0, gate_init=0.0, vision_encoder=None)
IMPLEMENTED = dict(fusion={"concat", "separate", "gated"}, activation={"relu", "gelu"},
                   vision_stem={"patch"}, vision_positions={"coordinates", "learned", "sin-cos-2d"},
                   resize={"stretch", "center-crop"})


def read_config(path):
    cfg = {**CONFIG_DEFAULTS, **json.loads(path.read_text())}
    problems = [f"{key} {cfg.get(key)!r} (this script implements {', '.join(sorted(ok))})"
                for key, ok in IMPLEMENTED.items() if cfg.get(key) not in ok]
    if cfg["vision_encoder"] is not None:
        problems.append("vision_encoder (a pretrained stem) is not implemented")
    if problems:
        raise SystemExit(f"{path}: unsupported config: " + "; ".join(problems))
    return cfg


# ---------------------------------------------------------------- the model

class KeyMask:
    """A key-padding mask: `bias` [B,1,1,Tk] (0 or -1e9), `any_valid` [B,1,1,1]."""

    def __init__(self, valid):
        valid = valid.float()
        self.bias = ((1 - valid) * MASKED)[:, None, None, :]
        self.any_valid = valid.amax(1)[:, None, None, None]

    def with_sink(self):
        """The same mask over keys followed by an always-valid sink."""
        mask = copy.copy(self)
        mask.bias = F.pad(self.bias, (0, 1))
        return mask


class Attention(nn.Module):
    """Multi-head attention without biases; with `sink`, a learned key and value
    (stored [d], used [1,H,1,dh]) follow every projected memory."""

    def __init__(self, cfg, sink=False):
        super().__init__()
        d, self.h = cfg["d_model"], cfg["n_heads"]
        self.dh = d // self.h
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.sink = sink
        if sink:
            self.sink_k = nn.Parameter(torch.zeros(d))
            self.sink_v = nn.Parameter(torch.zeros(d))

    def heads(self, x):  # [B, T, d] -> [B, H, T, dh]
        return x.unflatten(-1, (self.h, self.dh)).transpose(1, 2)

    def merge(self, x):  # [B, H, T, dh] -> [B, T, d] -> output projection
        return self.o_proj(x.transpose(1, 2).flatten(2))

    def project_kv(self, memory):
        k, v = self.heads(self.k_proj(memory)), self.heads(self.v_proj(memory))
        if self.sink:
            b = memory.shape[0]
            k = torch.cat([k, self.sink_k.view(1, self.h, 1, self.dh).expand(b, -1, -1, -1)], 2)
            v = torch.cat([v, self.sink_v.view(1, self.h, 1, self.dh).expand(b, -1, -1, -1)], 2)
        return k, v

    def attend(self, x, kv, mask=None):
        """x [B·K, T, d] attends to keys/values of batch B: the K rows of an
        input (beams) share one copy, their queries folded into the query axis."""
        k, v = kv
        bk, t, _ = x.shape
        b = k.shape[0]
        beams = bk // b
        q = self.heads(self.q_proj(x))
        if beams > 1:
            q = q.view(b, beams, self.h, t, self.dh).transpose(1, 2).reshape(b, self.h, beams * t, self.dh)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.bias)
        if mask is not None:
            out = out * mask.any_valid
        if beams > 1:
            out = out.view(b, self.h, beams, t, self.dh).transpose(1, 2).reshape(bk, self.h, t, self.dh)
        return self.merge(out)

    def self_attend(self, x, mask=None, causal=None, cache=None):
        """Self-attention; `cache` ([k, v] or [None, None]) holds earlier positions and is extended."""
        k, v = self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        if cache is not None:
            if cache[0] is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        bias = causal
        if mask is not None:
            bias = mask.bias if causal is None else mask.bias + causal
        out = F.scaled_dot_product_attention(self.heads(self.q_proj(x)), k, v, attn_mask=bias)
        if mask is not None:
            out = out * mask.any_valid
        return self.merge(out)


def layer_norm(cfg):
    return nn.LayerNorm(cfg["d_model"], eps=LN_EPS)


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1 = nn.Linear(cfg["d_model"], cfg["d_ff"], bias=False)
        self.fc2 = nn.Linear(cfg["d_ff"], cfg["d_model"], bias=False)
        self.act = F.relu if cfg["activation"] == "relu" else F.gelu  # gelu: exact (erf), as gelu_erf

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-LN: bidirectional self-attention, then feed-forward."""

    def __init__(self, cfg):
        super().__init__()
        self.ln1, self.attn, self.ln2, self.ff = layer_norm(cfg), Attention(cfg), layer_norm(cfg), FeedForward(cfg)

    def forward(self, x, mask=None):
        x = x + self.attn.self_attend(self.ln1(x), mask)
        return x + self.ff(self.ln2(x))


class TextBlock(EncoderBlock):
    """An encoder block whose tokens first read the image (`text_cross_attention`; text.rs)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.reads_image = cfg["text_cross_attention"]
        if self.reads_image:
            self.ln_image, self.image_attn = layer_norm(cfg), Attention(cfg, cfg["cross_attention_sink"])

    def forward(self, x, mask, image):
        if self.reads_image:  # no mask: every patch (and the sink) is valid
            x = x + self.image_attn.attend(self.ln_image(x), self.image_attn.project_kv(image))
        return super().forward(x, mask)


class ConditioningLayer(EncoderBlock):
    """Vision tokens read the question, then a plain encoder block (conditioning.rs)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.ln_question, self.question_attn = layer_norm(cfg), Attention(cfg, cfg["cross_attention_sink"])

    def forward(self, x, text, text_mask):
        mask = text_mask.with_sink() if self.question_attn.sink else text_mask
        read = self.question_attn.attend(self.ln_question(x), self.question_attn.project_kv(text), mask)
        return super().forward(x + read)


class VisionEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, s, p = cfg["d_model"], cfg["image_size"], cfg["patch_size"]
        self.p, self.positions = p, cfg["vision_positions"]
        channels = 5 if self.positions == "coordinates" else 3
        self.patch_embed = nn.Linear(channels * p * p, d)
        if cfg["vision_stem_norm"]:
            self.stem_norm = layer_norm(cfg)
        if self.positions == "learned":
            self.pos_embed = nn.Parameter(torch.zeros((s // p) ** 2, d))
        elif self.positions == "sin-cos-2d":  # vision.rs sincos_2d: row features, then column
            freq = 1.0 / 100.0 ** (torch.arange(d // 4) / max(d // 4, 1))
            feats = lambda c: torch.stack([torch.sin(c * freq), torch.cos(c * freq)], -1).flatten(-2)
            side = torch.arange(s // p, dtype=torch.float32)[:, None]
            rows, cols = feats(side)[:, None].expand(-1, s // p, -1), feats(side)[None].expand(s // p, -1, -1)
            self.register_buffer("table", torch.cat([rows, cols], -1).flatten(0, 1), persistent=False)
        else:  # coordinates: column then row, from -2 to 2 across the image, as extra input channels
            at = 4.0 * (torch.arange(s, dtype=torch.float32) + 0.5) / s - 2.0
            grid = torch.stack([at[None, :].expand(s, s), at[:, None].expand(s, s)])
            self.register_buffer("coordinates", grid[None], persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg["vision_layers"]))
        self.ln_f = layer_norm(cfg)

    def forward(self, images):  # [B, 3, S, S] normalised -> [B, Nv, d]
        if self.positions == "coordinates":
            images = torch.cat([images, self.coordinates.expand(images.shape[0], -1, -1, -1)], 1)
        b, c, h, w = images.shape
        p = self.p
        patches = images.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        x = self.patch_embed(patches)
        if hasattr(self, "stem_norm"):
            x = self.stem_norm(x)
        if self.positions == "learned":
            x = x + self.pos_embed
        elif self.positions == "sin-cos-2d":
            x = x + self.table
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)


class TextEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embed = nn.Parameter(torch.zeros(cfg["vocab_size"], cfg["d_model"]))
        self.pos_embed = nn.Parameter(torch.zeros(cfg["max_text_len"], cfg["d_model"]))
        self.blocks = nn.ModuleList(TextBlock(cfg) for _ in range(cfg["text_layers"]))
        self.ln_f = layer_norm(cfg)

    def forward(self, ids, mask, image):
        x = self.token_embed[ids] + self.pos_embed[: ids.shape[1]]
        for block in self.blocks:
            x = block(x, mask, image)
        return self.ln_f(x)


class DecoderLayer(nn.Module):
    """Masked self-attention, the fusion sublayer(s) of fusion.rs, feed-forward."""

    def __init__(self, cfg):
        super().__init__()
        sink = cfg["cross_attention_sink"]
        self.fusion = cfg["fusion"]
        self.ln_self, self.self_attn = layer_norm(cfg), Attention(cfg)
        if self.fusion == "concat":
            self.ln_cross_attn, self.cross_attn = layer_norm(cfg), Attention(cfg, sink)
        else:
            self.ln_cross_attn_vision, self.cross_attn_vision = layer_norm(cfg), Attention(cfg, sink)
            self.ln_cross_attn_text, self.cross_attn_text = layer_norm(cfg), Attention(cfg, sink)
            if self.fusion == "gated":
                self.gate_vision = nn.Parameter(torch.full((1,), float(cfg["gate_init"])))
                self.gate_text = nn.Parameter(torch.full((1,), float(cfg["gate_init"])))
        self.ln_ff, self.ff = layer_norm(cfg), FeedForward(cfg)

    def project(self, vision, text, text_mask, joint):
        """This layer's cross-attention keys/values and masks, computed once per input."""
        with_sink = lambda attn, mask: mask.with_sink() if attn.sink else mask
        if self.fusion == "concat":
            memory, mask = joint
            return self.cross_attn.project_kv(memory), with_sink(self.cross_attn, mask)
        return (self.cross_attn_vision.project_kv(vision), self.cross_attn_text.project_kv(text),
                with_sink(self.cross_attn_text, text_mask))

    def forward(self, x, cross, causal, cache):
        x = x + self.self_attn.self_attend(self.ln_self(x), causal=causal, cache=cache)
        if self.fusion == "concat":
            kv, mask = cross
            x = x + self.cross_attn.attend(self.ln_cross_attn(x), kv, mask)
        else:
            kv_vision, kv_text, text_mask = cross
            out = self.cross_attn_vision.attend(self.ln_cross_attn_vision(x), kv_vision)
            x = x + (out * torch.tanh(self.gate_vision) if self.fusion == "gated" else out)
            out = self.cross_attn_text.attend(self.ln_cross_attn_text(x), kv_text, text_mask)
            x = x + (out * torch.tanh(self.gate_text) if self.fusion == "gated" else out)
        return x + self.ff(self.ln_ff(x))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embed = nn.Parameter(torch.zeros(cfg["vocab_size"], cfg["d_model"]))
        self.pos_embed = nn.Parameter(torch.zeros(cfg["max_decode_len"], cfg["d_model"]))
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg["decoder_layers"]))
        self.ln_f = layer_norm(cfg)

    def new_cache(self):
        return [[None, None] for _ in self.layers]

    @staticmethod
    def reorder(cache, rows):
        for kv in cache:
            kv[:] = [t.index_select(0, rows) for t in kv]

    def forward(self, tokens, cross, cache=None):
        """tokens [N, T] at positions past..past+T -> logits [N, T, vocab]."""
        t = tokens.shape[1]
        past = 0 if cache is None or cache[0][0] is None else cache[0][0].shape[2]
        if past + t > self.pos_embed.shape[0]:
            raise ValueError(f"decoder sequence of {past + t} tokens exceeds max_decode_len")
        x = self.token_embed[tokens] + self.pos_embed[past:past + t]
        # Query i may see keys 0..=past+i; one query (a cached step) sees all.
        causal = None if t == 1 else torch.ones(t, past + t, device=x.device).triu(past + 1) * MASKED
        for i, layer in enumerate(self.layers):
            x = layer(x, cross[i], causal, None if cache is None else cache[i])
        return self.ln_f(x) @ self.token_embed.T  # tied LM head


class FusionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.vision, self.text = VisionEncoder(cfg), TextEncoder(cfg)
        if cfg["question_vision_layers"] > 0:
            self.conditioning = nn.Module()
            self.conditioning.layers = nn.ModuleList(
                ConditioningLayer(cfg) for _ in range(cfg["question_vision_layers"]))
        if cfg["fusion"] == "concat":  # added to the vision (row 0) and text (row 1) memories
            self.modality_embed = nn.Parameter(torch.zeros(2, cfg["d_model"]))
        # Training-only heads of the auxiliary losses (colour 9 + shape 5 + size
        # 3 classes, and "named by the question"): loaded, never used here.
        if cfg.get("attribute_loss", 0) > 0:
            self.attribute_head = nn.Linear(cfg["d_model"], 9 + 5 + 3)
        if cfg.get("mention_loss", 0) > 0:
            self.mention_head = nn.Linear(cfg["d_model"], 1)
        self.decoder = Decoder(cfg)

    def encode(self, images, text_ids, text_valid, image_of=None):
        """Both encoders (and the question conditioning): the memory (vision, text, text_valid)."""
        text_mask = KeyMask(text_valid)
        vision = self.vision(images)
        if image_of is not None:
            vision = vision.index_select(0, image_of)
        text = self.text(text_ids, text_mask, vision)
        if hasattr(self, "conditioning"):
            for layer in self.conditioning.layers:
                vision = layer(vision, text, text_mask)
        return vision, text, text_valid

    def cross_kv(self, vision, text, text_valid):
        joint = None
        if hasattr(self, "modality_embed"):
            valid = torch.cat([torch.ones(vision.shape[:2], device=vision.device), text_valid.float()], 1)
            memory = torch.cat([vision + self.modality_embed[0], text + self.modality_embed[1]], 1)
            joint = (memory, KeyMask(valid))
        return [layer.project(vision, text, KeyMask(text_valid), joint) for layer in self.decoder.layers]

    def forward(self, images, image_of, text_ids, text_valid, tokens):
        """Teacher-forced logits [B, T, vocab] (training)."""
        return self.decoder(tokens, self.cross_kv(*self.encode(images, text_ids, text_valid, image_of)))


# ------------------------------------------------ model directory and inputs

class WordTokenizer:
    """tokenizer.json as fusecap writes it: Lowercase, Whitespace, WordLevel (tokenizer.rs)."""

    def __init__(self, path):
        t = json.loads(path.read_text())
        kinds = (t["model"]["type"], (t.get("normalizer") or {}).get("type"),
                 (t.get("pre_tokenizer") or {}).get("type"), t.get("decoder"))
        if kinds != ("WordLevel", "Lowercase", "Whitespace", None):
            raise SystemExit(f"{path}: expected a lower-cased, whitespace-split word-level tokenizer, found {kinds}")
        self.vocab = t["model"]["vocab"]
        self.words = {i: w for w, i in self.vocab.items()}
        self.unk = self.vocab[t["model"]["unk_token"]]
        specials = [a["content"] for a in t["added_tokens"]]
        self.specials = set(specials)
        self.split_specials = re.compile("(" + "|".join(map(re.escape, specials)) + ")")

    def encode(self, text):
        """Special tokens in the raw text, and unknown words, become [UNK]."""
        ids = []
        for piece in self.split_specials.split(text):
            if piece in self.specials:
                ids.append(self.unk)
            else:
                ids += [self.vocab.get(w, self.unk) for w in re.findall(r"\w+|[^\w\s]+", piece.lower())]
        return [max(i, NUM_SPECIALS - 1) for i in ids]

    def decode(self, ids):
        text = " ".join(self.words[i] for i in ids if i >= NUM_SPECIALS)
        for p in "?,:;.!":
            text = text.replace(" " + p, p)
        return text


def load_model_dir(path, device="cpu"):
    """(cfg, model in eval mode, tokenizer); stops with a list of problems if the files disagree."""
    path = Path(path)
    cfg = read_config(path / "config.json")
    model = FusionModel(cfg)
    stored = load_file(str(path / "model.safetensors"))
    expected = model.state_dict()
    problems = [f"missing tensor {n} {list(t.shape)}" for n, t in expected.items() if n not in stored]
    problems += [f"unused tensor {n} {list(t.shape)}" for n, t in sorted(stored.items()) if n not in expected]
    problems += [f"tensor {n}: expected {list(t.shape)}, found {list(stored[n].shape)}"
                 for n, t in expected.items() if n in stored and stored[n].shape != t.shape]
    if problems:
        raise SystemExit(f"{path / 'model.safetensors'}: the weights do not match config.json "
                         f"({len(problems)} problem(s)):\n  " + "\n  ".join(problems))
    model.load_state_dict({n: t.float() for n, t in stored.items()}, strict=True)
    tokenizer = WordTokenizer(path / "tokenizer.json")
    if len(tokenizer.vocab) != cfg["vocab_size"]:
        raise SystemExit(f"{path}: vocab_size is {cfg['vocab_size']} but tokenizer.json has {len(tokenizer.vocab)}")
    return cfg, model.to(device).eval(), tokenizer


def read_png(path):
    """An 8-bit RGB or RGBA, non-interlaced PNG as uint8 [H, W, 3]; alpha over white."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG (this reader handles the PNGs of samples/ only)")
    pos, idat = 8, []
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    if depth != 8 or color not in (2, 6) or interlace:
        raise SystemExit(f"{path}: only 8-bit RGB/RGBA non-interlaced PNGs are read here")
    bpp = 3 if color == 2 else 4
    stride, raw = w * bpp, zlib.decompress(b"".join(idat))
    prev, rows = bytearray(stride), []
    for y in range(h):
        kind, line = raw[y * (stride + 1)], raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        cur = bytearray(stride)
        for x in range(stride):  # undo the row filter (PNG spec, section 9)
            a, b = cur[x - bpp] if x >= bpp else 0, prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:
                pred = (0, a, b, (a + b) // 2)[kind]
            cur[x] = (line[x] + pred) & 255
        rows.append(cur)
        prev = cur
    img = np.frombuffer(b"".join(rows), np.uint8).reshape(h, w, bpp)
    if bpp == 4:  # image.rs flatten_alpha, in f32
        a = img[..., 3:].astype(np.float32) / np.float32(255)
        img = np.floor((img[..., :3] * a + np.float32(255) * (1 - a)).astype(np.float64) + 0.5).astype(np.uint8)
    return img


def triangle_taps(src, dst):
    """The `image` crate's Triangle-filter taps (imageops/sample.rs), in f32: [(first, weights)]."""
    f32 = np.float32
    ratio = f32(src) / f32(dst)
    scale = max(ratio, f32(1))
    support = f32(1) * scale
    taps = []
    for out in range(dst):
        centre = (f32(out) + f32(0.5)) * ratio
        left = min(max(int(np.floor(centre - support)), 0), src - 1)
        right = min(max(int(np.ceil(centre + support)), left + 1), src)
        centre = centre - f32(0.5)
        weights = [max(f32(1) - abs((f32(i) - centre) / scale), f32(0)) for i in range(left, right)]
        total = f32(0)
        for wt in weights:
            total = f32(total + wt)
        taps.append((left, [f32(wt / total) for wt in weights]))
    return taps


def resample(img, taps, axis):
    """One pass along `axis`, accumulating in f32 in tap order as the Rust loop does."""
    out = []
    for left, weights in taps:
        acc = np.zeros(np.take(img, 0, axis).shape, np.float32)
        for i, wt in enumerate(weights):
            acc = acc + np.take(img, left + i, axis).astype(np.float32) * wt
        out.append(acc)
    return np.stack(out, axis)


def preprocess(path, cfg):
    """Normalised CHW f32 pixels, as src/data/image.rs makes them."""
    img, size = read_png(path), cfg["image_size"]
    h, w = img.shape[:2]
    if cfg["resize"] == "center-crop" and (w, h) != (size, size):
        side = min(w, h)
        img = img[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    if img.shape[:2] != (size, size):  # vertical pass (kept in f32), then horizontal, rounded to u8
        img = resample(img, triangle_taps(img.shape[0], size), 0)
        img = resample(img, triangle_taps(img.shape[1], size), 1)
        img = np.floor(np.clip(img, 0, 255).astype(np.float64) + 0.5).astype(np.uint8)
    mean, std = np.float32(cfg["image_mean"]), np.float32(cfg["image_std"])
    return ((img.astype(np.float32) / np.float32(255) - mean) / std).transpose(2, 0, 1).copy()


def pad_tokens(seqs, cfg, device):
    """Right-pads to a common length (at least 1, at most max_text_len): ids, valid."""
    seqs = [s[: cfg["max_text_len"]] for s in seqs]
    n = max(1, max(len(s) for s in seqs))
    ids = torch.tensor([s + [cfg["pad_id"]] * (n - len(s)) for s in seqs], device=device)
    valid = torch.tensor([[1.0] * len(s) + [0.0] * (n - len(s)) for s in seqs], device=device)
    return ids, valid


# ------------------------------------------------------------------ decoding

@torch.inference_mode()
def greedy(model, memory, max_new, min_new=0):
    """[(tokens, logprob)] per input; each row stops at its own EOS (sample.rs)."""
    cfg, n = model.cfg, memory[0].shape[0]
    eos, dev = cfg["eos_id"], memory[0].device
    cross, cache = model.cross_kv(*memory), model.decoder.new_cache()
    nxt = torch.full((n, 1), cfg["bos_id"], device=dev)
    finished, logprob, out = torch.zeros(n, dtype=torch.bool, device=dev), torch.zeros(n, device=dev), []
    for step in range(min(max_new, cfg["max_decode_len"])):
        logp = torch.log_softmax(model.decoder(nxt, cross, cache)[:, -1], -1)
        search = logp
        if step < min_new:
            search = logp.clone()
            search[:, eos] = float("-inf")
        tok = torch.where(finished, eos, search.argmax(-1))  # argmax: the first of equal values
        logprob += torch.where(finished, 0.0, logp.gather(1, tok[:, None])[:, 0])
        out.append(tok)
        finished |= tok == eos
        nxt = tok[:, None]
        if finished.all():
            break
    rows = torch.stack(out, 1).tolist()
    return [(r[: r.index(eos)] if eos in r else r, lp) for r, lp in zip(rows, logprob.tolist())]


def hypothesis(tokens, logprob, score, length, length_penalty):
    normalised = np.float32(score) / np.float32(max(length, 1)) ** np.float32(length_penalty)
    return float(normalised), tokens, float(logprob)


@torch.inference_mode()
def beam_search(model, memory, k, max_new, min_new=0, length_penalty=1.0):
    """[(tokens, logprob)] of the best hypothesis per input; rows b·k + beam (beam.rs)."""
    cfg, n = model.cfg, memory[0].shape[0]
    eos, dev = cfg["eos_id"], memory[0].device
    cross, cache = model.cross_kv(*memory), model.decoder.new_cache()
    score = torch.full((n, k), float("-inf"), device=dev)
    score[:, 0] = 0  # only the first beam of each input is live at first
    logprob, tokens = torch.zeros(n, k, device=dev), torch.zeros(n, k, 0, dtype=torch.long, device=dev)
    finished, done = [[] for _ in range(n)], torch.zeros(n, dtype=torch.bool, device=dev)
    rank = torch.arange(2 * k, device=dev)
    nxt = torch.full((n * k, 1), cfg["bos_id"], device=dev)
    for step in range(min(max_new, cfg["max_decode_len"])):
        logp = torch.log_softmax(model.decoder(nxt, cross, cache)[:, -1], -1)
        vocab = logp.shape[1]
        search = logp
        if step < min_new:
            search = logp.clone()
            search[:, eos] = float("-inf")
        # Candidates best first, ties to the lower beam then the lower token; the
        # best 2k hold at least k that are not EOS. Dead beams score -inf.
        top, idx = (score.reshape(-1, 1) + search).view(n, k * vocab).sort(dim=1, descending=True, stable=True)
        top, idx = top[:, : 2 * k], idx[:, : 2 * k]
        parent, tok = idx // vocab, idx % vocab
        cand_logprob = (logprob.reshape(-1, 1) + logp).view(n, k * vocab).gather(1, idx)
        live = top.isfinite()
        is_eos = live & (tok == eos)
        # An EOS among the top k finishes a hypothesis (inputs already done are skipped).
        for b, r in (is_eos[:, :k] & ~done[:, None]).nonzero().tolist():
            finished[b].append(hypothesis(tokens[b, parent[b, r]].tolist(), cand_logprob[b, r].item(),
                                          top[b, r].item(), step + 1, length_penalty))
        # The best k others become the beams, padded with dead ones (parent 0, next token EOS).
        keep = live & ~is_eos
        keep &= keep.cumsum(1) <= k
        pick = torch.where(keep, rank, rank + 2 * k).argsort(1)[:, :k]
        ok = keep.gather(1, pick)
        parents = torch.where(ok, parent.gather(1, pick), 0)
        new_tok = torch.where(ok, tok.gather(1, pick), eos)
        score = torch.where(ok, top.gather(1, pick), float("-inf"))
        logprob = torch.where(ok, cand_logprob.gather(1, pick), 0.0)
        tokens = torch.cat([tokens.gather(1, parents[..., None].expand_as(tokens)), new_tok[..., None]], 2)
        done |= torch.tensor([len(f) >= k for f in finished], device=dev)
        if done.all():
            break
        # The rows of inputs already done change too, but nothing reads them again.
        model.decoder.reorder(cache, (torch.arange(n, device=dev)[:, None] * k + parents).flatten())
        nxt = new_tok.reshape(-1, 1)
    for b in (~done).nonzero()[:, 0].tolist():
        for j in score[b].isfinite().nonzero()[:, 0].tolist():
            finished[b].append(hypothesis(tokens[b, j].tolist(), logprob[b, j].item(), score[b, j].item(),
                                          tokens.shape[2], length_penalty))
    best = [sorted(f, key=lambda h: -h[0])[0] for f in finished]  # stable, as beam.rs
    return [(tokens, lp) for _, tokens, lp in best]


def decode(model, memory, beams, max_new, min_new=0):
    if beams == 1:
        return greedy(model, memory, max_new, min_new)
    return beam_search(model, memory, beams, max_new, min_new)


@torch.inference_mode()
def answer(model, tokenizer, pixels, texts, beams, max_new=40, batch_size=32):
    """(text, logprob) for each (image pixels, text-encoder input), in batches as fusecap does."""
    cfg, dev, out = model.cfg, next(model.parameters()).device, []
    for i in range(0, len(texts), batch_size):
        images = torch.from_numpy(np.stack(pixels[i:i + batch_size])).to(dev)
        ids, valid = pad_tokens([tokenizer.encode(t) for t in texts[i:i + batch_size]], cfg, dev)
        for tokens, lp in decode(model, model.encode(images, ids, valid), beams, max_new):
            out.append((tokenizer.decode(tokens), lp))
    return out


# ------------------------------------------------------------------- parity

def run_fusecap(binary, args, threads):
    cmd = [str(binary), *map(str, args), "--format", "jsonl", "-q", "--threads", str(threads or 1)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def read_questions(path):
    lines = (line.strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def parity(args):
    images = [str(p) for p in (args.images or sorted((REPO / "samples").glob("*.png")))]
    questions = read_questions(args.questions)
    summary, failures = [], []
    for model_dir in args.models:
        cfg, model, tokenizer = load_model_dir(model_dir, args.device)
        pixels = {image: preprocess(image, cfg) for image in images}
        for beams in args.beams:
            flags = ["--model", model_dir, "--beams", beams]
            # (task, image, question, fusecap's record) for every case
            cases = [("caption", r["image"], None, r) for r in run_fusecap(args.fusecap, ["caption", *images, *flags], args.threads)]
            for image in images:
                cases += [("ask", r["image"], r["question"], r)
                          for r in run_fusecap(args.fusecap, ["ask", image, "--questions", args.questions, *flags], args.threads)]
            for task in ("caption", "ask"):
                mine = [c for c in cases if c[0] == task]
                expected = len(images) * (1 if task == "caption" else len(questions))
                ours = answer(model, tokenizer, [pixels[c[1]] for c in mine],
                              [c[2] or cfg["caption_prompt"] for c in mine], beams)
                worst, same = 0.0, 0
                for (_, image, question, ref), (text, lp) in zip(mine, ours):
                    diff = abs(lp - ref.get("logprob", float("nan")))
                    ok = text == ref.get("output") and diff < args.tolerance
                    same += ok
                    worst = max(worst, diff)
                    if not ok or args.verbose:
                        line = (f"{Path(model_dir).name} beams {beams} {task} {Path(image).name}"
                                f"{' ' + repr(question) if question else ''}: fusecap {ref.get('output')!r} "
                                f"{ref.get('logprob')}, torch {text!r} {lp:.8g}")
                        (print if ok else failures.append)(line)
                if len(mine) != expected:
                    failures.append(f"{Path(model_dir).name} beams {beams} {task}: fusecap gave "
                                    f"{len(mine)} records, expected {expected}")
                summary.append((Path(model_dir).name, task, beams, len(mine), same, worst))
    print(f"\n| model | task | beams | cases | identical (text, Δlogprob < {args.tolerance:g}) | max Δlogprob |")
    print("|---|---|---|---|---|---|")
    for name, task, beams, n, same, worst in summary:
        print(f"| {name} | {task} | {beams} | {n} | {same} | {worst:.2e} |")
    for line in failures:
        print("MISMATCH", line)
    print("parity: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


# -------------------------------------------------------------------- timing

TOKENS = 20  # new tokens per caption (benches/decode.rs)
TRAIN_BATCH, TRAIN_TEXT_LEN, TRAIN_DECODE_LEN = 64, 8, 16


def median_seconds(fn, reps, warmup, device):
    def once():
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start
    for _ in range(warmup):
        once()
    return statistics.median(once() for _ in range(reps))


def train_step_fn(model, cfg, device, gen):
    """One step as train.rs: per-example mean token cross-entropy, clip to norm 1,
    AdamW (betas 0.9/0.98, eps 1e-8, decay 0.01 on matrices only, gates at 10× lr)."""
    model = copy.deepcopy(model).train()
    params = dict(model.named_parameters())
    gates = [p for n, p in params.items() if "gate_" in n]
    groups = [dict(params=[p for n, p in params.items() if "gate_" not in n and p.dim() >= 2]),
              dict(params=[p for n, p in params.items() if "gate_" not in n and p.dim() < 2], weight_decay=0.0)]
    if gates:
        groups.append(dict(params=gates, lr=1e-2, weight_decay=0.0))
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.01)
    b, s, v = TRAIN_BATCH, cfg["image_size"], cfg["vocab_size"]
    images = (torch.rand(b, 3, s, s, generator=gen) * 4 - 2).to(device)
    text_ids = torch.randint(NUM_SPECIALS, v, (b, TRAIN_TEXT_LEN), generator=gen).to(device)
    text_valid = torch.ones(b, TRAIN_TEXT_LEN, device=device)
    target = torch.randint(NUM_SPECIALS, v, (b, TRAIN_DECODE_LEN), generator=gen).to(device)
    inputs = torch.cat([torch.full((b, 1), cfg["bos_id"], device=device), target[:, :-1]], 1)
    image_of = torch.arange(b, device=device)

    def step():
        logits = model(images, image_of, text_ids, text_valid, inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(b, -1).mean(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def time_cases(args):
    for model_dir in args.models:
        cfg, model, tokenizer = load_model_dir(model_dir, args.device)
        gen = torch.Generator().manual_seed(1)
        base = dict(impl="torch", torch=torch.__version__, model=Path(model_dir).name, fusion=cfg["fusion"],
                    device=args.device, threads=torch.get_num_threads(), reps=args.reps, warmup=args.warmup)
        prompt = tokenizer.encode(cfg["caption_prompt"])
        for beams, batch in ((1, 1), (1, 32), (3, 1), (3, 32)):
            images = (torch.rand(batch, 3, cfg["image_size"], cfg["image_size"], generator=gen) * 4 - 2).to(args.device)
            ids, valid = pad_tokens([prompt] * batch, cfg, args.device)

            def run():
                with torch.inference_mode():
                    out = decode(model, model.encode(images, ids, valid), beams, TOKENS, TOKENS)
                assert all(len(tokens) == TOKENS for tokens, _ in out)
            ms = 1000 * median_seconds(run, args.reps, args.warmup, args.device) / batch
            case = "greedy" if beams == 1 else f"beam{beams}"
            print(json.dumps({**base, "case": case, "batch": batch, "new_tokens": TOKENS,
                              "ms_per_image": round(ms, 4)}), flush=True)
        seconds = median_seconds(train_step_fn(model, cfg, args.device, gen), args.reps, args.warmup, args.device)
        print(json.dumps({**base, "case": "train", "batch": TRAIN_BATCH, "text_len": TRAIN_TEXT_LEN,
                          "decode_len": TRAIN_DECODE_LEN, "ms_per_step": round(1000 * seconds, 3),
                          "samples_per_s": round(TRAIN_BATCH / seconds, 2)}), flush=True)
    return 0


# ---------------------------------------------------------------------- main

def main():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                        help="torch intra-op threads (inter-op: 1); passed to fusecap by parity")
    common.add_argument("--device", default=argparse.SUPPRESS, help="torch device (default cpu)")
    common.add_argument("--models", nargs="+", default=argparse.SUPPRESS,
                        help="model directories (default: the three from-scratch ones)")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load", parents=[common], help="load a model directory and report")
    load.add_argument("model_dir")
    par = sub.add_parser("parity", parents=[common], help="compare decoding with the fusecap binary")
    par.add_argument("--fusecap", default=str(REPO / "target" / "release" / "fusecap"))
    par.add_argument("--images", nargs="+", help="PNG files (default samples/*.png)")
    par.add_argument("--questions", default=str(REPO / "samples" / "questions.txt"))
    par.add_argument("--beams", nargs="+", type=int, default=[1, 3])
    par.add_argument("--tolerance", type=float, default=1e-3)
    par.add_argument("-v", "--verbose", action="store_true", help="print every case")
    tim = sub.add_parser("time", parents=[common], help="time torch decoding and training")
    tim.add_argument("--reps", type=int, default=15)
    tim.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    args.threads = getattr(args, "threads", None)
    args.device = getattr(args, "device", "cpu")
    args.models = [str(m) for m in getattr(args, "models", FROM_SCRATCH)]
    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    if args.command == "load":
        cfg, model, tokenizer = load_model_dir(args.model_dir, args.device)
        count = sum(p.numel() for p in model.parameters())
        print(f"{args.model_dir}: {cfg['fusion']}, {len(model.state_dict())} tensors, {count} parameters, "
              f"{len(tokenizer.vocab)} tokens: every tensor mapped")
        return 0
    return parity(args) if args.command == "parity" else time_cases(args)


if __name__ == "__main__":
    sys.exit(main())
