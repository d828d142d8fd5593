//! VQA accuracy as the official VQA evaluation computes it: `vqaEval.py` of
//! the VQA challenge (github.com/GT-Vision-Lab/VQA,
//! `PythonEvaluationTools/vqaEvaluation/vqaEval.py`), quirks included, with
//! Python 3 string semantics.
//!
//! For one question with human answers `H` and a prediction `P`:
//! 1. in `P` and every answer of `H`, newlines and tabs become spaces, then
//!    leading and trailing whitespace is stripped (Python's `str.strip()`:
//!    Unicode whitespace plus the separators U+001C..U+001F);
//! 2. only when the stripped answers of `H` are not all equal are `P` and `H`
//!    normalised ([`normalize_answer`]); when all humans agree, `P` must equal
//!    their answer exactly (`"Yes"` scores 0 against ten `"yes"`);
//! 3. accuracy = mean over the leave-one-out subsets of `H` of
//!    `min(1, #answers in the subset equal to P / 3)`.
//!
//! Normalisation (`processPunctuation`, then `processDigitArticle`):
//! - each mark of `; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !` is deleted
//!   everywhere if the text (as it was before any mark was handled) has that
//!   mark next to a space, or has a digit-comma-digit anywhere; otherwise each
//!   occurrence becomes a space;
//! - a `.` not followed by a decimal digit is deleted, at most the first 32
//!   of them (the official call passes `re.UNICODE`, 32, where `re.sub` takes
//!   its `count`);
//! - "digit" is any Unicode decimal digit (category Nd), as Python's `\d`;
//! - lower-case, split on Unicode whitespace, number words `none`, `zero` ..
//!   `ten` → digits, articles `a`/`an`/`the` dropped, then the words of the
//!   official contraction table replaced (`dont` → `don't`; `lets` is not in
//!   it; its entries with capitals never match lower-cased words).
//!
//! With fewer than two human answers the official rule gives 0 for every
//! prediction; fusecap then scores 1 if the normalised prediction equals the
//! normalised reference answer (or the single human answer), else 0.

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

/// The official contraction table, entry for entry (including its odd ones,
/// such as `somebody'd` → `somebodyd`).
const CONTRACTIONS: [(&str, &str); 120] = [
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

/// Most periods one normalisation deletes (see the module comment).
const MAX_PERIODS_STRIPPED: usize = 32;

/// The Unicode decimal digits (general category Nd) of Unicode 14.0, the
/// version of Python 3.11's `unicodedata`: what Python's `\d` matches.
const DECIMAL_DIGITS: [(u32, u32); 62] = [
    (0x30, 0x39),
    (0x660, 0x669),
    (0x6F0, 0x6F9),
    (0x7C0, 0x7C9),
    (0x966, 0x96F),
    (0x9E6, 0x9EF),
    (0xA66, 0xA6F),
    (0xAE6, 0xAEF),
    (0xB66, 0xB6F),
    (0xBE6, 0xBEF),
    (0xC66, 0xC6F),
    (0xCE6, 0xCEF),
    (0xD66, 0xD6F),
    (0xDE6, 0xDEF),
    (0xE50, 0xE59),
    (0xED0, 0xED9),
    (0xF20, 0xF29),
    (0x1040, 0x1049),
    (0x1090, 0x1099),
    (0x17E0, 0x17E9),
    (0x1810, 0x1819),
    (0x1946, 0x194F),
    (0x19D0, 0x19D9),
    (0x1A80, 0x1A89),
    (0x1A90, 0x1A99),
    (0x1B50, 0x1B59),
    (0x1BB0, 0x1BB9),
    (0x1C40, 0x1C49),
    (0x1C50, 0x1C59),
    (0xA620, 0xA629),
    (0xA8D0, 0xA8D9),
    (0xA900, 0xA909),
    (0xA9D0, 0xA9D9),
    (0xA9F0, 0xA9F9),
    (0xAA50, 0xAA59),
    (0xABF0, 0xABF9),
    (0xFF10, 0xFF19),
    (0x104A0, 0x104A9),
    (0x10D30, 0x10D39),
    (0x11066, 0x1106F),
    (0x110F0, 0x110F9),
    (0x11136, 0x1113F),
    (0x111D0, 0x111D9),
    (0x112F0, 0x112F9),
    (0x11450, 0x11459),
    (0x114D0, 0x114D9),
    (0x11650, 0x11659),
    (0x116C0, 0x116C9),
    (0x11730, 0x11739),
    (0x118E0, 0x118E9),
    (0x11950, 0x11959),
    (0x11C50, 0x11C59),
    (0x11D50, 0x11D59),
    (0x11DA0, 0x11DA9),
    (0x16A60, 0x16A69),
    (0x16AC0, 0x16AC9),
    (0x16B50, 0x16B59),
    (0x1D7CE, 0x1D7FF),
    (0x1E140, 0x1E149),
    (0x1E2F0, 0x1E2F9),
    (0x1E950, 0x1E959),
    (0x1FBF0, 0x1FBF9),
];

/// Python's `\d` on `str` patterns: a Unicode decimal digit.
fn is_py_digit(c: char) -> bool {
    let c = u32::from(c);
    DECIMAL_DIGITS
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Python's `str.isspace()`: Unicode White_Space plus U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// What the official evaluation does to every answer first: newlines and tabs
/// to spaces, then `str.strip()`.
fn strip_answer(answer: &str) -> String {
    answer
        .replace(['\n', '\t'], " ")
        .trim_matches(is_py_space)
        .to_string()
}

/// Normalise one answer the way the official VQA evaluation does when the
/// human answers disagree: strip, punctuation, periods, lower case, number
/// words, articles, contractions.
pub fn normalize_answer(answer: &str) -> String {
    normalize_stripped(&strip_answer(answer))
}

fn normalize_stripped(text: &str) -> String {
    process_digit_article(&process_punctuation(text))
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
        .any(|w| is_py_digit(w[0]) && w[1] == ',' && is_py_digit(w[2]))
}

/// Deletes the first [`MAX_PERIODS_STRIPPED`] periods that no decimal digit
/// follows (the follower is looked up in the text as it was).
fn strip_periods(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut stripped = 0;
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let digit_follows = chars.get(i + 1).is_some_and(|&n| is_py_digit(n));
        if c == '.' && !digit_follows && stripped < MAX_PERIODS_STRIPPED {
            stripped += 1;
        } else {
            out.push(c);
        }
    }
    out
}

fn process_digit_article(text: &str) -> String {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(is_py_space)
        .filter(|w| !w.is_empty())
        .map(|w| lookup(&NUMBER_WORDS, w).unwrap_or(w))
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| lookup(&CONTRACTIONS, w).unwrap_or(w))
        .collect();
    words.join(" ")
}

fn lookup<'a>(table: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    table.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

/// Accuracy of one prediction, in [0, 1].
///
/// With two or more human `answers`: the official rule (module comment).
/// Otherwise: 1 if the normalised prediction equals the normalised `answer`
/// (or the single human answer, if there is one), else 0.
pub fn vqa_accuracy(prediction: &str, answer: &str, answers: &[String]) -> f64 {
    if answers.len() < 2 {
        let pred = normalize_answer(prediction);
        let matches = |a: &str| normalize_answer(a) == pred;
        return f64::from(u8::from(
            matches(answer) || answers.iter().any(|a| matches(a)),
        ));
    }
    let mut pred = strip_answer(prediction);
    let mut human: Vec<String> = answers.iter().map(|a| strip_answer(a)).collect();
    if human.iter().any(|a| *a != human[0]) {
        pred = normalize_stripped(&pred);
        for a in &mut human {
            *a = normalize_stripped(a);
        }
    }
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
    use super::vqa_accuracy;

    fn humans(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn agreeing_humans_are_compared_without_normalisation() {
        let ten_yes = humans(&["yes"; 10]);
        assert_eq!(vqa_accuracy("yes", "yes", &ten_yes), 1.0);
        assert_eq!(vqa_accuracy(" yes\n", "yes", &ten_yes), 1.0);
        assert_eq!(vqa_accuracy("Yes", "yes", &ten_yes), 0.0);
        assert_eq!(vqa_accuracy("yes.", "yes", &ten_yes), 0.0);
        let mut nine_yes = ten_yes.clone();
        nine_yes[9] = "no".into();
        assert_eq!(vqa_accuracy("Yes", "yes", &nine_yes), 1.0);
    }

    #[test]
    fn at_most_32_periods_are_deleted() {
        assert_eq!(norm(&"x.".repeat(32)), "x".repeat(32));
        assert_eq!(norm(&"x.".repeat(34)), format!("{}x.x.", "x".repeat(32)));
    }

    #[test]
    fn digits_and_whitespace_are_unicode() {
        // Arabic-Indic digits: a period before one survives, a comma between
        // two deletes every punctuation mark.
        assert_eq!(norm("1.\u{663}"), "1.\u{663}");
        assert_eq!(norm("\u{661},\u{662}-x"), "\u{661}\u{662}x");
        // A superscript two is not a decimal digit.
        assert_eq!(norm("x.\u{b2}"), "x\u{b2}");
        assert_eq!(norm("\u{1f}red\u{3000}ball\u{a0}"), "red ball");
    }

    #[test]
    fn official_contraction_table() {
        assert_eq!(norm("shant"), "shan't");
        assert_eq!(norm("whatll"), "what'll");
        assert_eq!(norm("lets"), "lets");
        assert_eq!(norm("somebody'd"), "somebodyd");
    }

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
