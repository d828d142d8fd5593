//! Linear probes of a DINOv2 encoder directory.
//!
//! On easy-VQA: how well does a linear classifier on its features (class
//! token and mean patch token) tell the shape and the colour, against the
//! same probe on raw pixels?
//!
//! cargo run --release --example encoder_probe -- ENCODER_DIR MANIFEST [TRAIN TEST SIZE]
//! MANIFEST is `fusecap data easy-vqa`'s manifest.jsonl; labels come from its
//! shape and colour questions.
//!
//! On scenes, per token of the 3×3 grid a model with `"tokens": 3` sees (the
//! patch grid average-pooled, as `PretrainedVision` pools it): does the token
//! tell the colour, shape and size of the object in its cell, or that the
//! cell is empty? One probe per input size.
//!
//! cargo run --release --example encoder_probe -- cells ENCODER_DIR SCENES_DIR TRAIN TEST SIZE...
//! SCENES_DIR is a `fusecap data synth` folder (its scenes.jsonl).
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

/// Softmax regression on standardised features; returns the train accuracy
/// and, per test example, whether it was classified right.
fn probe(
    train: &Tensor,
    test: &Tensor,
    ytr: &[String],
    yte: &[String],
) -> Result<(f64, Vec<bool>)> {
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
    let hits = |x: &Tensor, l: &Tensor| -> Result<Vec<bool>> {
        let hit = logits(x)?.argmax(D::Minus1)?.eq(l)?.to_vec1::<u8>()?;
        Ok(hit.into_iter().map(|h| h == 1).collect())
    };
    Ok((share(&hits(&xtr, &ltr)?), hits(&xte, &lte)?))
}

/// The share of `true`s.
fn share(hits: &[bool]) -> f64 {
    hits.iter().filter(|&&h| h).count() as f64 / hits.len().max(1) as f64
}

/// One cell of a scene's 3×3 grid: its image and the colour, shape and size
/// of the object in it ("empty" for none).
struct Cell {
    image: PathBuf,
    labels: [String; 3],
}

/// The scenes of `scenes.jsonl`, each as its 9 cells.
fn scene_cells(dir: &Path, count: usize, skip: usize) -> Result<Vec<Vec<Cell>>> {
    let path = dir.join("scenes.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut scenes = Vec::new();
    for line in text.lines().skip(skip).take(count) {
        let r: serde_json::Value = serde_json::from_str(line)?;
        let image = dir.join(r["image"].as_str().context("scene without image")?);
        let mut cells: Vec<Cell> = (0..9)
            .map(|_| Cell {
                image: image.clone(),
                labels: ["empty".into(), "empty".into(), "empty".into()],
            })
            .collect();
        for o in r["objects"].as_array().context("scene without objects")? {
            let (row, col) = (o["row"].as_u64(), o["col"].as_u64());
            let (Some(row @ 0..=2), Some(col @ 0..=2)) = (row, col) else {
                bail!(
                    "an object of {} has no row and column of a 3x3 grid",
                    path.display()
                );
            };
            let cell = &mut cells[(row * 3 + col) as usize];
            for (label, key) in cell.labels.iter_mut().zip(["color", "shape", "size"]) {
                *label = o[key].as_str().unwrap_or("?").to_string();
            }
        }
        scenes.push(cells);
    }
    Ok(scenes)
}

/// Per scene, the patch grid average-pooled to 3×3: [scenes × 9, hidden].
fn pooled_cells(model: &Dinov2, scenes: &[Vec<Cell>], size: usize) -> Result<Tensor> {
    let grid = size / model.config.patch_size;
    if !grid.is_multiple_of(3) {
        bail!("size {size} gives a {grid}x{grid} patch grid, which does not pool to 3x3");
    }
    let mut rows = Vec::new();
    for chunk in scenes.chunks(16) {
        let data: Vec<f32> = chunk
            .iter()
            .map(|cells| pixels(&cells[0].image, size as u32))
            .collect::<Result<Vec<_>>>()?
            .concat();
        let x = Tensor::from_vec(data, (chunk.len(), 3, size, size), &Device::Cpu)?;
        rows.push(model.pooled_patches(&x, 3)?.flatten_to(1)?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}

fn cells_main(args: &[String]) -> Result<()> {
    if args.len() < 6 {
        bail!("usage: encoder_probe cells ENCODER_DIR SCENES_DIR TRAIN TEST SIZE...");
    }
    let count = |i: usize| -> Result<usize> {
        args[i]
            .parse()
            .with_context(|| format!("{} is not a count", args[i]))
    };
    let (n_train, n_test) = (count(3)?, count(4)?);
    let model = Dinov2::load(Path::new(&args[1]), &Device::Cpu)?;
    let train = scene_cells(Path::new(&args[2]), n_train, 0)?;
    let test = scene_cells(Path::new(&args[2]), n_test, n_train)?;
    let (ctr, cte): (Vec<&Cell>, Vec<&Cell>) = (
        train.iter().flatten().collect(),
        test.iter().flatten().collect(),
    );
    for size in &args[5..] {
        let size: usize = size
            .parse()
            .with_context(|| format!("{size} is not a size"))?;
        let start = Instant::now();
        let ftr = pooled_cells(&model, &train, size)?;
        let fte = pooled_cells(&model, &test, size)?;
        let ms = 1000.0 * start.elapsed().as_secs_f64() / (train.len() + test.len()) as f64;
        let mut line = format!("{size}px ({ms:.0} ms/image):");
        for (i, name) in ["colour", "shape", "size"].iter().enumerate() {
            let ytr: Vec<String> = ctr.iter().map(|c| c.labels[i].clone()).collect();
            let yte: Vec<String> = cte.iter().map(|c| c.labels[i].clone()).collect();
            let (_, hits) = probe(&ftr, &fte, &ytr, &yte)?;
            // The cells that hold an object: the part that binds.
            let on_objects: Vec<bool> = hits
                .iter()
                .zip(&cte)
                .filter(|(_, c)| c.labels[0] != "empty")
                .map(|(&h, _)| h)
                .collect();
            line += &format!(
                " {name} {:.1}% (cells with an object {:.1}%)",
                100.0 * share(&hits),
                100.0 * share(&on_objects)
            );
        }
        println!(
            "{line}  [{} train / {} test scenes]",
            train.len(),
            test.len()
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("cells") {
        return cells_main(&args[1..]);
    }
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
        let (b, d) = (share(&b), share(&d));
        println!("{target}: DINOv2 probe train {:.1}% test {:.1}%; 16x16 pixels probe train {:.1}% test {:.1}%", 100.0 * a, 100.0 * b, 100.0 * c, 100.0 * d);
    }
    Ok(())
}
