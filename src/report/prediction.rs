//! One record's output and its score.
use serde::Serialize;

use crate::data::manifest::{Record, Task};
use crate::metrics::cider::cider_d_per_image;
use crate::metrics::{caption_tokens, normalize_answer, vqa_accuracy, VqaItem};

/// One record, the model's output and how well it scored.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// Where the record came from, "MANIFEST:LINE".
    pub source: String,
    pub image: String,
    /// "caption" or "vqa".
    pub task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question_type: Option<String>,
    pub output: String,
    /// The reference captions, or the answer followed by the human answers.
    pub references: Vec<String>,
    /// VQA accuracy of a question, CIDEr-D of a caption (against this corpus).
    pub score: f64,
    /// Total log-probability of the output (higher = more confident).
    pub logprob: f32,
    /// Why the record could not be run; it is then scored as an empty output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Prediction {
    pub(super) fn new(
        record: &Record,
        output: String,
        logprob: f32,
        error: Option<String>,
    ) -> Self {
        let (task, question, question_type, references) = match &record.task {
            Task::Caption { captions } => ("caption", None, None, captions.clone()),
            Task::Vqa {
                question,
                answer,
                answers,
                question_type,
            } => {
                let mut refs = vec![answer.clone()];
                refs.extend(answers.iter().cloned());
                ("vqa", Some(question.clone()), question_type.clone(), refs)
            }
        };
        Prediction {
            source: record.source.clone(),
            image: record.image.display().to_string(),
            task,
            question,
            question_type,
            output,
            references,
            score: 0.0,
            logprob,
            error,
        }
    }

    pub fn is_vqa(&self) -> bool {
        self.task == "vqa"
    }

    /// The output as the metrics compare it: normalised answer or caption tokens.
    pub fn normalized_output(&self) -> String {
        if self.is_vqa() {
            normalize_answer(&self.output)
        } else {
            caption_tokens(&self.output).join(" ")
        }
    }

    pub(super) fn vqa_item(&self) -> VqaItem {
        VqaItem {
            prediction: self.output.clone(),
            answer: self.references.first().cloned().unwrap_or_default(),
            answers: self.references.iter().skip(1).cloned().collect(),
            question_type: self.question_type.clone(),
        }
    }
}

/// Fills in each prediction's `score`: VQA accuracy for questions, CIDEr-D
/// (document frequencies from all caption records here) for captions.
pub fn score_predictions(predictions: &mut [Prediction]) {
    let mut caption_rows = Vec::new();
    let mut hyps = Vec::new();
    let mut refs = Vec::new();
    for (i, p) in predictions.iter_mut().enumerate() {
        if p.is_vqa() {
            let item = p.vqa_item();
            p.score = vqa_accuracy(&item.prediction, &item.answer, &item.answers);
        } else {
            caption_rows.push(i);
            hyps.push(caption_tokens(&p.output));
            refs.push(p.references.iter().map(|r| caption_tokens(r)).collect());
        }
    }
    for (row, score) in caption_rows
        .into_iter()
        .zip(cider_d_per_image(&hyps, &refs))
    {
        predictions[row].score = score;
    }
}
