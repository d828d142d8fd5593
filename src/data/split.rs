//! Train / validation / test splits and the text a tokenizer learns from,
//! shared by `fusecap train` and `fusecap experiment`.
use super::manifest::{Record, Task};
use crate::tokenizer::DEFAULT_WORDS;

/// Stable across runs and platforms, unlike `DefaultHasher`.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

pub struct Splits<'a> {
    pub train: Vec<&'a Record>,
    pub val: Vec<&'a Record>,
    pub test: Vec<&'a Record>,
}

/// "val" records validate; without any, `val_percent` of the training images
/// (chosen by a hash of the path, so every question about an image stays on one side,
/// also in a manifest filtered from this one: loading normalises the path).
pub fn split_records(records: &[Record], val_percent: u64) -> Splits<'_> {
    let has_val = records.iter().any(|r| r.in_split("val"));
    let held_out = |r: &Record| {
        if has_val {
            r.in_split("val")
        } else {
            r.in_split("train") && fnv1a(&r.image.to_string_lossy()) % 100 < val_percent
        }
    };
    Splits {
        train: records
            .iter()
            .filter(|r| r.in_split("train") && !held_out(r))
            .collect(),
        val: records.iter().filter(|r| held_out(r)).collect(),
        test: records.iter().filter(|r| r.in_split("test")).collect(),
    }
}

/// The default words plus every caption, question and answer of `records`.
pub fn training_texts(records: &[&Record]) -> Vec<String> {
    let mut out = vec![DEFAULT_WORDS.to_string()];
    for r in records {
        match &r.task {
            Task::Caption { captions } => out.extend(captions.iter().cloned()),
            Task::Vqa {
                question, answer, ..
            } => out.extend([question.clone(), answer.clone()]),
        }
    }
    out
}
