//! Caption pre-processing, in the spirit of pycocoevalcap's `PTBTokenizer`.
//!
//! pycocoevalcap runs the Stanford PTB tokenizer with lower-casing and then
//! drops punctuation tokens. This is a dependency-free approximation:
//!
//! - lower-case (Unicode-aware);
//! - every character that is not alphanumeric, whitespace, `'` or `-` separates
//!   words and is dropped — except `.` and `,` between two digits (`3.5`, `1,000`),
//!   which PTB keeps inside the number;
//! - words are split on whitespace; leading/trailing `'` and `-` are trimmed
//!   (quotes, dashes), inner hyphens stay (`well-known`);
//! - English clitics are split off as PTB does: `dog's` → `dog 's`,
//!   `don't` → `do n't`, `they're` → `they 're`.
//!
//! Simplified against PTB: no special handling of abbreviations (`mr.` → `mr`),
//! `$`/`%`/`&` are dropped rather than kept as tokens.

use std::collections::HashMap;

/// Counts of every n-gram of length 1..=`max_n`, keyed by the token slice.
/// pycocoevalcap's `precook`.
pub type NgramCounts<'a> = HashMap<&'a [String], usize>;

/// Tokenise one caption into lower-case words without punctuation.
pub fn caption_tokens(text: &str) -> Vec<String> {
    let cleaned = strip_punctuation(&text.to_lowercase());
    cleaned.split_whitespace().flat_map(split_word).collect()
}

/// Count all n-grams of length 1..=`max_n` in `tokens`.
pub fn ngram_counts(tokens: &[String], max_n: usize) -> NgramCounts<'_> {
    let mut counts = NgramCounts::new();
    for n in 1..=max_n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// Replace separator punctuation by spaces; keep `.`/`,` inside numbers.
fn strip_punctuation(text: &str) -> String {
    let chars: Vec<char> = text
        .chars()
        .map(|c| if c == '’' { '\'' } else { c })
        .collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let keep = c.is_alphanumeric()
            || c.is_whitespace()
            || c == '\''
            || c == '-'
            || ((c == '.' || c == ',') && between_digits(&chars, i));
        out.push(if keep { c } else { ' ' });
    }
    out
}

fn between_digits(chars: &[char], i: usize) -> bool {
    let before = i > 0 && chars[i - 1].is_ascii_digit();
    let after = chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
    before && after
}

const CLITICS: [&str; 6] = ["'s", "'re", "'ve", "'ll", "'d", "'m"];

/// Trim quote/dash characters and split an English clitic off the end.
fn split_word(word: &str) -> Vec<String> {
    let word = word.trim_matches(|c| c == '\'' || c == '-');
    if word.is_empty() {
        return Vec::new();
    }
    if let Some(stem) = word.strip_suffix("n't").filter(|s| !s.is_empty()) {
        return vec![stem.to_string(), "n't".to_string()];
    }
    for clitic in CLITICS {
        if let Some(stem) = word.strip_suffix(clitic).filter(|s| !s.is_empty()) {
            return vec![stem.to_string(), clitic.to_string()];
        }
    }
    vec![word.to_string()]
}

#[cfg(test)]
mod tests {
    use super::{caption_tokens, ngram_counts};

    fn toks(s: &str) -> Vec<String> {
        caption_tokens(s)
    }

    #[test]
    fn lowercases_and_drops_punctuation() {
        assert_eq!(toks("A Dog, running."), ["a", "dog", "running"]);
        assert_eq!(toks("  \"Hello\"  (world)! "), ["hello", "world"]);
    }

    #[test]
    fn keeps_numbers_and_inner_hyphens() {
        assert_eq!(
            toks("3.5 kg, 1,000 well-known -- x"),
            ["3.5", "kg", "1,000", "well-known", "x"]
        );
    }

    #[test]
    fn splits_clitics_like_ptb() {
        assert_eq!(toks("The dog's bone"), ["the", "dog", "'s", "bone"]);
        assert_eq!(toks("it don't"), ["it", "do", "n't"]);
        assert_eq!(toks("'quoted'"), ["quoted"]);
    }

    #[test]
    fn ngram_counts_cover_all_orders() {
        // "a a b": 1-grams a×2, b×1; 2-grams "a a", "a b"; 3-gram "a a b" → 5 keys.
        let t = toks("a a b");
        let c = ngram_counts(&t, 4);
        assert_eq!(c.len(), 5);
        assert_eq!(c[&t[0..1]], 2);
        assert_eq!(c[&t[..]], 1);
    }

    #[test]
    fn empty_input_gives_no_tokens() {
        assert!(toks("").is_empty());
        assert!(toks(" ... ").is_empty());
    }
}
