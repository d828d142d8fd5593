//! VQA accuracy as the official VQA evaluation (`vqaEval.py`) computes it.
//!
//! Answer normalisation (`processPunctuation` then `processDigitArticle`):
//! 1. newlines/tabs → spaces, trim;
//! 2. each punctuation mark of `; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !` is
//!    deleted if the *original* text has it next to a space or contains a
//!    digit-comma-digit sequence anywhere, and replaced by a space otherwise;
//! 3. a `.` is deleted unless a digit follows it (`2.5` survives, `dog.` →
//!    `dog`) — what the official regex does in practice;
//! 4. lower-case, split on whitespace, number words `none`/`zero`..`ten` →
//!    digits, articles `a`/`an`/`the` dropped;
//! 5. apostrophe-less contractions restored (`dont` → `don't`).
//!
//! Simplified: the contraction map is the common subset of the official list
//! (the official entries with capitals, like `Im`, can never match lower-cased
//! text there either). The official script normalises only when the human
//! answers disagree, because VQA's stored answers are already normalised; here
//! both sides are always normalised, which gives the same result on VQA data and
//! the sensible one on user data.
//!
//! Accuracy with several human answers: for each answer left out in turn,
//! `min(#other answers equal to the prediction / 3, 1)`, averaged.

use std::collections::BTreeMap;

use serde::Serialize;

const PUNCT: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

const NUMBER_WORDS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

const ARTICLES: [&str; 3] = ["a", "an", "the"];

const CONTRACTIONS: [(&str, &str); 52] = [
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itll", "it'll"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("oclock", "o'clock"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("thats", "that's"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("wasnt", "wasn't"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whens", "when's"),
    ("wheres", "where's"),
    ("whos", "who's"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("yall", "y'all"),
    ("youd", "you'd"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
    ("lets", "let's"),
];

/// Normalise one answer the way the official VQA evaluation does.
pub fn normalize_answer(answer: &str) -> String {
    let answer = answer.replace(['\n', '\t'], " ");
    let answer = process_punctuation(answer.trim());
    process_digit_article(&answer)
}

fn process_punctuation(text: &str) -> String {
    let delete_all = has_digit_comma_digit(text);
    let mut out = text.to_string();
    for p in PUNCT {
        let touches_space = text.contains(&format!("{p} ")) || text.contains(&format!(" {p}"));
        let replacement = if touches_space || delete_all { "" } else { " " };
        out = out.replace(p, replacement);
    }
    strip_periods(&out)
}

fn has_digit_comma_digit(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == ',' && w[2].is_ascii_digit())
}

/// Drop every `.` not followed by a digit.
fn strip_periods(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c != '.' || chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()))
        .map(|(_, &c)| c)
        .collect()
}

fn process_digit_article(text: &str) -> String {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split_whitespace()
        .map(|w| lookup(&NUMBER_WORDS, w).unwrap_or(w))
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| lookup(&CONTRACTIONS, w).unwrap_or(w))
        .collect();
    words.join(" ")
}

fn lookup<'a>(table: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    table.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

/// Accuracy of one prediction.
///
/// With two or more human `answers`: the official leave-one-out rule, in [0, 1].
/// Otherwise: 1 if the normalised prediction equals the normalised `answer`
/// (or the single human answer, if there is one), else 0.
pub fn vqa_accuracy(prediction: &str, answer: &str, answers: &[String]) -> f64 {
    let pred = normalize_answer(prediction);
    if answers.len() < 2 {
        let matches = |a: &str| normalize_answer(a) == pred;
        return f64::from(u8::from(
            matches(answer) || answers.iter().any(|a| matches(a)),
        ));
    }
    let human: Vec<String> = answers.iter().map(|a| normalize_answer(a)).collect();
    let total_matches = human.iter().filter(|a| **a == pred).count();
    let sum: f64 = human
        .iter()
        .map(|left_out| {
            let others = total_matches - usize::from(*left_out == pred);
            (others as f64 / 3.0).min(1.0)
        })
        .sum();
    sum / human.len() as f64
}

/// One VQA prediction with its ground truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VqaItem {
    pub prediction: String,
    /// The single reference answer (the most common human answer).
    pub answer: String,
    /// All human answers; may be empty.
    pub answers: Vec<String>,
    pub question_type: Option<String>,
}

/// Aggregate VQA scores. Accuracies are fractions in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VqaScores {
    /// Mean [`vqa_accuracy`].
    pub accuracy: f64,
    /// Fraction of predictions equal to `answer` after normalisation.
    pub exact_match: f64,
    /// Question type → (mean accuracy, number of questions), for items with a type.
    pub per_type: BTreeMap<String, (f64, usize)>,
    pub n: usize,
}

/// Score a set of VQA predictions. Empty input gives zeros.
pub fn vqa_scores(items: &[VqaItem]) -> VqaScores {
    let mut acc_sum = 0.0;
    let mut exact_sum = 0.0;
    let mut per_type: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for item in items {
        let acc = vqa_accuracy(&item.prediction, &item.answer, &item.answers);
        acc_sum += acc;
        if normalize_answer(&item.prediction) == normalize_answer(&item.answer) {
            exact_sum += 1.0;
        }
        if let Some(kind) = &item.question_type {
            let entry = per_type.entry(kind.clone()).or_insert((0.0, 0));
            entry.0 += acc;
            entry.1 += 1;
        }
    }
    for (sum, count) in per_type.values_mut() {
        *sum /= *count as f64;
    }
    let n = items.len();
    let mean = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
    VqaScores {
        accuracy: mean(acc_sum),
        exact_match: mean(exact_sum),
        per_type,
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_answer as norm;

    #[test]
    fn punctuation_next_to_space_is_deleted_else_spaced() {
        // "-" has no space next to it → replaced by a space.
        assert_eq!(norm("t-shirt"), "t shirt");
        // "?" is followed by end of text, "!" touches a space → deleted.
        assert_eq!(norm("yes !"), "yes");
        // a digit,digit anywhere → every mark deleted.
        assert_eq!(norm("1,000"), "1000");
    }

    #[test]
    fn periods_survive_only_before_digits() {
        assert_eq!(norm("2.5"), "2.5");
        assert_eq!(norm("dog."), "dog");
    }

    #[test]
    fn numbers_articles_contractions() {
        assert_eq!(norm("Two"), "2");
        assert_eq!(norm("a dog."), "dog");
        assert_eq!(norm("The  Dont\n"), "don't");
    }
}
