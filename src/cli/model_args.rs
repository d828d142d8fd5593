//! Which model a command runs, and where: `--model`, `--device`.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use candle_core::Device;

use crate::generate::{every_core, set_inference_threads};
use crate::model::dir::CONFIG_FILE;
use crate::pipeline::{load_model, ModelDir};

/// The shipped models `compare` runs by default: one per fusion strategy, all
/// trained by the same recipe on the pretrained encoders (docs/encoders.md),
/// in the order reports list them.
pub const FUSION_MODELS: [&str; 3] = [
    "pretrained-concat",
    "pretrained-separate",
    "pretrained-gated",
];

/// The shipped model used when no `--model` is given: trained from random
/// weights, so it runs without the pretrained encoders' download.
pub const DEFAULT_MODEL: &str = "scenes-concat";

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json), or
    /// the name of a shipped model (pretrained-gated) when no such folder exists.
    /// Default: the shipped scenes-concat.
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<PathBuf>,
    /// `--fusion` once picked a shipped model here; refused, naming `--model`.
    #[arg(long = "fusion", value_name = "FUSION", hide = true)]
    pub retired_fusion: Option<String>,
    /// Where to run: cpu, or cuda / metal when built with those features.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub threads: InferenceThreads,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct InferenceThreads {
    /// Worker threads, each captioning its share of a batch. Default:
    /// every core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl InferenceThreads {
    /// Starts the inference workers with candle on one thread each; must
    /// run before the first tensor operation.
    pub fn apply(&self) -> Result<()> {
        let workers = thread_count(self.threads)?;
        one_candle_thread_per_worker();
        set_inference_threads(workers);
        Ok(())
    }
}

/// The worker threads a `--threads` value asks for: every core when it is
/// absent, refused when 0.
pub fn thread_count(given: Option<usize>) -> Result<usize> {
    if given == Some(0) {
        bail!("--threads 0: give at least 1 (the default is every core)");
    }
    Ok(given.unwrap_or_else(every_core))
}

/// Workers do their arithmetic on one thread each (docs/design.md,
/// "Threads"); must run before the first tensor operation.
pub fn one_candle_thread_per_worker() {
    std::env::set_var("RAYON_NUM_THREADS", "1");
}

impl ModelArgs {
    /// Resolves `--model` (or the default shipped model) and loads it.
    pub fn load(&self) -> Result<(ModelDir, Device)> {
        refuse_fusion_as_model(self.retired_fusion.as_deref())?;
        self.threads.apply()?;
        let device = parse_device(&self.device)?;
        let dir = match self.model.as_deref() {
            Some(given) => model_dir(given),
            None => shipped_model(DEFAULT_MODEL)?,
        };
        Ok((load_model(&dir, &device)?, device))
    }
}

/// `--fusion` names the strategy of a new model (train, init, experiment);
/// commands that run an existing model take its directory or name by `--model`.
pub fn refuse_fusion_as_model(given: Option<&str>) -> Result<()> {
    let Some(value) = given else { return Ok(()) };
    let names: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "all")
        .map(|v| format!("--model pretrained-{v}"))
        .collect();
    let instead = if names.is_empty() {
        FUSION_MODELS.map(|m| format!("--model {m}")).join(" ")
    } else {
        names.join(" ")
    };
    bail!(
        "--fusion picks the strategy of a new model (train, init, experiment); to run a shipped model, name it: {instead}"
    )
}

/// A `--model` value: the folder when it exists, else the shipped model of
/// that name, else the folder as given (loading it then says what is missing).
pub fn model_dir(given: &Path) -> PathBuf {
    let is_name = given.components().count() == 1;
    if given.exists() || !is_name {
        return given.to_path_buf();
    }
    given
        .to_str()
        .and_then(|name| shipped_model(name).ok())
        .unwrap_or_else(|| given.to_path_buf())
}

/// Finds a shipped model: under $FUSECAP_MODELS, ./models, or the source tree's models/.
pub fn shipped_model(name: &str) -> Result<PathBuf> {
    let mut roots = Vec::new();
    if let Some(root) = std::env::var_os("FUSECAP_MODELS") {
        roots.push(PathBuf::from(root));
    }
    roots.push(PathBuf::from("models"));
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    roots
        .iter()
        .map(|root| root.join(name))
        .find(|dir| dir.join(CONFIG_FILE).is_file())
        .ok_or_else(|| {
            anyhow!(
                "no shipped model '{name}' found in {}; name a model directory with --model (--models for compare), set FUSECAP_MODELS, or create one with `fusecap init`",
                roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        })
}

pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" if candle_core::utils::cuda_is_available() => Ok(Device::new_cuda(0)?),
        "metal" if candle_core::utils::metal_is_available() => Ok(Device::new_metal(0)?),
        "cuda" | "metal" => bail!("this build of fusecap has no {name} support; rebuild with `cargo build --release --features {name}` or use --device cpu"),
        other => bail!("unknown device '{other}'; use cpu, cuda or metal"),
    }
}
