#!/usr/bin/env python3
"""How large a pretrained model's vision tokens are against the position
vectors added to them: the L2 norm of the frozen DINOv2 features (read from
the encoder's feature cache), of their projection to d_model (the model's
`vision.pretrained.proj`), and of each row of its learned `vision.pos_embed`
and the distances between those rows. Pure Python, no numpy.

  scripts/token_norms.py MODEL_DIR FEATURE_CACHE [IMAGES]
  scripts/token_norms.py runs/pretrained-concat-seed0 encoders/dinov2-small/features-84px-3x3.cache
"""
import json
import math
import struct
import sys


def tensors(path, names):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        out = {}
        for name in names:
            if name not in header:
                continue
            info = header[name]
            start, end = info["data_offsets"]
            f.seek(8 + n + start)
            raw = f.read(end - start)
            code = {"F16": "e", "F32": "f"}[info["dtype"]]
            out[name] = (info["shape"], struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))
        return out


def cached_features(path, count):
    with open(path, "rb") as f:
        if f.read(8) != b"FCFEAT01":
            sys.exit(f"{path} is not a fusecap feature cache")
        _, width, entries = struct.unpack("<QQQ", f.read(24))
        for _ in range(min(count, entries)):
            f.read(8)
            yield width, struct.unpack(f"<{width}e", f.read(2 * width))


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def span(values):
    return f"{min(values):.2f} to {max(values):.2f}"


model, cache = sys.argv[1], sys.argv[2]
images = int(sys.argv[3]) if len(sys.argv) > 3 else 10
t = tensors(f"{model}/model.safetensors",
            ["vision.pretrained.proj.weight", "vision.pretrained.proj.bias", "vision.pos_embed"])
(d, hidden), weight = t["vision.pretrained.proj.weight"]
_, bias = t["vision.pretrained.proj.bias"]
feature_norms, token_norms = [], []
for width, values in cached_features(cache, images):
    for k in range(width // hidden):
        x = values[k * hidden:(k + 1) * hidden]
        feature_norms.append(norm(x))
        y = [sum(weight[o * hidden + j] * x[j] for j in range(hidden)) + bias[o] for o in range(d)]
        token_norms.append(norm(y))
print(f"DINOv2 pooled features ({len(feature_norms)} tokens of {images} images): norm {span(feature_norms)}")
print(f"projected to d_model {d}: norm {span(token_norms)}")
if "vision.pos_embed" in t:
    (rows, _), table = t["vision.pos_embed"]
    vectors = [table[r * d:(r + 1) * d] for r in range(rows)]
    print(f"learned positions: norm {span([norm(v) for v in vectors])}, distance between two "
          f"{span([norm([a - b for a, b in zip(u, v)]) for i, u in enumerate(vectors) for v in vectors[i + 1:]])}")
else:
    print("no learned position table (fixed positions)")
