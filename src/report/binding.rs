//! Where a model binds attributes to the wrong object: accuracy per question
//! type in scenes of one object against scenes of two or more, and on the
//! "is there a <color> <shape>?" questions whose colour and shape sit on
//! different objects. Needs the `scenes.jsonl` that `fusecap data synth`
//! writes beside its manifest.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::prediction::Prediction;
use crate::data::files::lexically_normal;
use crate::data::scene::Scene;
use crate::data::synth::SceneLine;
use crate::data::synth_text::is_split_conjunction;

/// Mean VQA accuracy over `n` questions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Share {
    pub accuracy: f64,
    pub n: usize,
}

impl Share {
    fn add(&mut self, score: f64) {
        self.accuracy = (self.accuracy * self.n as f64 + score) / (self.n + 1) as f64;
        self.n += 1;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BindingReport {
    /// Per question type: scenes with one object, scenes with two or more.
    pub per_type: BTreeMap<String, (Share, Share)>,
    /// "is there a red circle?" where red and circle are on different objects.
    pub split_conjunctions: Share,
}

/// The scenes of `scenes.jsonl` beside `manifest`, by image path as the
/// manifest's records resolve it; `None` where there is no such file.
pub fn scenes_beside(manifest: &Path) -> Result<Option<HashMap<PathBuf, Scene>>> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let path = dir.join("scenes.jsonl");
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut scenes = HashMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line: SceneLine = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: not a scene line as `fusecap data synth` writes them",
                path.display(),
                i + 1
            )
        })?;
        scenes.insert(lexically_normal(&dir.join(&line.image)), line.scene);
    }
    Ok(Some(scenes))
}

/// The breakdown over the scored VQA predictions whose image is in `scenes`;
/// `None` where there are none.
pub fn binding_report(
    predictions: &[Prediction],
    scenes: &HashMap<PathBuf, Scene>,
) -> Option<BindingReport> {
    let mut report = BindingReport::default();
    for p in predictions.iter().filter(|p| p.is_vqa()) {
        let (Some(scene), Some(question)) = (scenes.get(Path::new(&p.image)), &p.question) else {
            continue;
        };
        let kind = p.question_type.clone().unwrap_or_else(|| "other".into());
        let (one, several) = report.per_type.entry(kind).or_default();
        if scene.objects.len() > 1 {
            several.add(p.score);
        } else {
            one.add(p.score);
        }
        if is_split_conjunction(scene, question) {
            report.split_conjunctions.add(p.score);
        }
    }
    // Every counted question adds its type to `per_type`.
    (!report.per_type.is_empty()).then_some(report)
}
