//! Linear probe of a DINOv2 encoder directory on easy-VQA: how well do a
//! linear classifier on its features (class token and mean patch token) tell
//! the shape and the colour, against the same probe on raw pixels?
//!
//! cargo run --release --example encoder_probe -- ENCODER_DIR MANIFEST [TRAIN TEST SIZE]
//! MANIFEST is `fusecap data easy-vqa`'s manifest.jsonl; labels come from its
//! shape and colour questions.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use fusecap::encoders::dinov2::Dinov2;

/// Reads one label of an example.
type Label = fn(&Example) -> String;

struct Example {
    image: PathBuf,
    shape: String,
    color: String,
}

fn examples(manifest: &Path, split: &str) -> Result<Vec<Example>> {
    let root = manifest.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let mut labels: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line)?;
        if r["split"] != split {
            continue;
        }
        let (Some(image), Some(kind), Some(answer)) = (
            r["image"].as_str(),
            r["question_type"].as_str(),
            r["answer"].as_str(),
        ) else {
            continue;
        };
        let entry = labels.entry(image.to_string()).or_default();
        match kind {
            "shape" => entry.0 = Some(answer.to_string()),
            "color" => entry.1 = Some(answer.to_string()),
            _ => {}
        }
    }
    Ok(labels
        .into_iter()
        .filter_map(|(image, (shape, color))| {
            Some(Example {
                image: root.join(image),
                shape: shape?,
                color: color?,
            })
        })
        .collect())
}

fn pixels(path: &Path, size: u32) -> Result<Vec<f32>> {
    let img = image::open(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .to_rgb8();
    let img = image::imageops::resize(&img, size, size, image::imageops::FilterType::Triangle);
    let (m, s) = (
        fusecap::encoders::dinov2::IMAGENET_MEAN,
        fusecap::encoders::dinov2::IMAGENET_STD,
    );
    let n = (size * size) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (p.0[c] as f32 / 255.0 - m[c]) / s[c];
        }
    }
    Ok(out)
}

fn dino_features(model: &Dinov2, set: &[Example], size: usize) -> Result<Tensor> {
    let mut rows = Vec::new();
    for chunk in set.chunks(16) {
        let data: Vec<f32> = chunk
            .iter()
            .map(|e| pixels(&e.image, size as u32))
            .collect::<Result<Vec<_>>>()?
            .concat();
        let x = Tensor::from_vec(data, (chunk.len(), 3, size, size), &Device::Cpu)?;
        let h = model.forward(&x)?;
        let cls = h.narrow(1, 0, 1)?.squeeze(1)?;
        let mean = h.narrow(1, 1, h.dim(1)? - 1)?.mean(1)?;
        rows.push(Tensor::cat(&[cls, mean], 1)?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}

fn pixel_features(set: &[Example]) -> Result<Tensor> {
    let data: Vec<f32> = set
        .iter()
        .map(|e| pixels(&e.image, 16))
        .collect::<Result<Vec<_>>>()?
        .concat();
    Ok(Tensor::from_vec(
        data,
        (set.len(), 3 * 16 * 16),
        &Device::Cpu,
    )?)
}

/// Softmax regression on standardised features; returns (train, test) accuracy.
fn probe(train: &Tensor, test: &Tensor, ytr: &[String], yte: &[String]) -> Result<(f64, f64)> {
    let classes: Vec<&String> = {
        let mut c: Vec<&String> = ytr.iter().collect();
        c.sort();
        c.dedup();
        c
    };
    let idx = |y: &[String]| -> Tensor {
        let v: Vec<u32> = y
            .iter()
            .map(|l| classes.iter().position(|c| *c == l).unwrap_or(0) as u32)
            .collect();
        Tensor::new(v, &Device::Cpu).expect("labels")
    };
    let mean = train.mean_keepdim(0)?;
    let std = (train.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)? + 1e-6)?.sqrt()?;
    let norm = |x: &Tensor| x.broadcast_sub(&mean)?.broadcast_div(&std);
    let (xtr, xte) = (norm(train)?, norm(test)?);
    let d = xtr.dim(1)?;
    let w = Var::zeros((d, classes.len()), DType::F32, &Device::Cpu)?;
    let b = Var::zeros(classes.len(), DType::F32, &Device::Cpu)?;
    let mut opt = AdamW::new(
        vec![w.clone(), b.clone()],
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 1e-2,
            ..Default::default()
        },
    )?;
    let (ltr, lte) = (idx(ytr), idx(yte));
    let logits = |x: &Tensor| x.matmul(w.as_tensor())?.broadcast_add(b.as_tensor());
    for _ in 0..300 {
        let loss = candle_nn::loss::cross_entropy(&logits(&xtr)?, &ltr)?;
        opt.backward_step(&loss)?;
    }
    let acc = |x: &Tensor, l: &Tensor| -> Result<f64> {
        let hit = logits(x)?
            .argmax(D::Minus1)?
            .eq(l)?
            .to_dtype(DType::F32)?
            .mean_all()?;
        Ok(f64::from(hit.to_scalar::<f32>()?))
    };
    Ok((acc(&xtr, &ltr)?, acc(&xte, &lte)?))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: encoder_probe ENCODER_DIR MANIFEST [TRAIN TEST SIZE]");
    }
    let n = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (n_train, n_test, size) = (n(3, 800), n(4, 400), n(5, 112));
    let manifest = Path::new(&args[2]);
    let mut train = examples(manifest, "train")?;
    let mut test = examples(manifest, "test")?;
    train.truncate(n_train);
    test.truncate(n_test);
    let model = Dinov2::load(Path::new(&args[1]), &Device::Cpu)?;
    let start = Instant::now();
    let ftr = dino_features(&model, &train, size)?;
    let fte = dino_features(&model, &test, size)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} train / {} test images at {size}x{size}: DINOv2 features in {secs:.0} s ({:.0} ms/image)",
        train.len(),
        test.len(),
        1000.0 * secs / (train.len() + test.len()) as f64
    );
    let (ptr, pte) = (pixel_features(&train)?, pixel_features(&test)?);
    let targets: [(&str, Label); 2] = [
        ("shape", |e| e.shape.clone()),
        ("color", |e| e.color.clone()),
    ];
    for (target, get) in targets {
        let ytr: Vec<String> = train.iter().map(get).collect();
        let yte: Vec<String> = test.iter().map(get).collect();
        let (a, b) = probe(&ftr, &fte, &ytr, &yte)?;
        let (c, d) = probe(&ptr, &pte, &ytr, &yte)?;
        println!("{target}: DINOv2 probe train {:.1}% test {:.1}%; 16x16 pixels probe train {:.1}% test {:.1}%", 100.0 * a, 100.0 * b, 100.0 * c, 100.0 * d);
    }
    Ok(())
}
