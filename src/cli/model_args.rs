//! Which model a command runs, and where: `--model`, `--fusion`, `--device`.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use candle_core::Device;

use crate::model::dir::{load_config, CONFIG_FILE};
use crate::model::Fusion;
use crate::pipeline::{load_model, ModelDir};

/// The shipped model used when neither `--model` nor `--fusion` is given.
pub const DEFAULT_MODEL: &str = "scenes-separate";

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json), or
    /// the name of a shipped model (scenes-gated) when no such folder exists.
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<PathBuf>,
    /// Use the shipped model of this fusion strategy (models/scenes-FUSION).
    #[arg(long, value_enum)]
    pub fusion: Option<Fusion>,
    /// Where to run: cpu, or cuda / metal when built with those features.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl ModelArgs {
    /// Resolves `--model` / `--fusion` to a directory and loads it.
    pub fn load(&self) -> Result<(ModelDir, Device)> {
        let device = parse_device(&self.device)?;
        let dir = match (self.model.as_deref().map(model_dir), self.fusion) {
            (Some(dir), Some(fusion)) => {
                let cfg = load_config(&dir.join(CONFIG_FILE))?;
                if cfg.fusion != fusion {
                    bail!(
                        "--model {} uses fusion '{}' but --fusion says '{}'; drop one of the two options",
                        dir.display(),
                        cfg.fusion,
                        fusion
                    );
                }
                dir
            }
            (Some(dir), None) => dir,
            (None, Some(fusion)) => shipped_model(&format!("scenes-{fusion}"))?,
            (None, None) => shipped_model(DEFAULT_MODEL)?,
        };
        Ok((load_model(&dir, &device)?, device))
    }
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
