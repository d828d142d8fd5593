//! A lower-cased word-level tokenizer, stored as a Hugging Face `tokenizer.json`.
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{AddedToken, Tokenizer};

/// Special tokens, in id order: their ids are 0, 1, 2, 3.
pub const SPECIAL_TOKENS: [&str; 4] = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"];

/// Words every default vocabulary holds, so `init` without `--vocab-from` can
/// still encode the sample questions.
pub const DEFAULT_WORDS: &str = "a an the is are there of and it this that what which where how many color colour shape \
    size small large big tiny left right top bottom middle center centre above below next to closest nearest \
    circle square triangle star rectangle red green blue yellow orange purple pink brown black white gray grey cyan \
    zero one two three four five yes no image picture shows shape shapes caption ? ,";

#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({} tokens)", self.vocab_size())
    }
}

impl TextTokenizer {
    /// Trains a word-level vocabulary on `texts`: every word seen at least `min_count` times.
    pub fn train<'a>(texts: impl Iterator<Item = &'a str>, min_count: u64) -> Result<Self> {
        let specials = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        let trainer = WordLevelTrainer::builder()
            .min_frequency(min_count)
            .special_tokens(specials)
            .show_progress(false)
            .build()
            .map_err(|e| anyhow!("building the tokenizer trainer: {e}"))?;
        let mut inner = Tokenizer::new(
            WordLevel::builder()
                .unk_token("[UNK]".into())
                .build()
                .map_err(|e| anyhow!("{e}"))?,
        );
        inner
            .with_normalizer(Some(Lowercase))
            .map_err(|e| anyhow!("{e}"))?;
        inner.with_pre_tokenizer(Some(Whitespace {}));
        let mut trainer = TrainerWrapper::WordLevelTrainer(trainer);
        let texts: Vec<String> = texts.map(str::to_string).collect();
        inner
            .train(&mut trainer, texts.into_iter())
            .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
        let tokenizer = TextTokenizer {
            inner: with_sorted_vocab(&inner)?,
        };
        tokenizer.check_specials()?;
        Ok(tokenizer)
    }

    /// The vocabulary `fusecap init` uses when given no text to learn from.
    pub fn default_vocabulary() -> Result<Self> {
        Self::train(std::iter::once(DEFAULT_WORDS), 1)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a valid tokenizer.json ({e}); re-create it with `fusecap init` or `fusecap train`", path.display()))?;
        let tokenizer = TextTokenizer { inner };
        tokenizer
            .check_specials()
            .with_context(|| format!("{}", path.display()))?;
        Ok(tokenizer)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, true)
            .map_err(|e| anyhow!("writing {}: {e}", path.display()))
    }

    fn check_specials(&self) -> Result<()> {
        for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
            if self.inner.token_to_id(token) != Some(id as u32) {
                return Err(anyhow!("special token {token} must have id {id}"));
            }
        }
        Ok(())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids without special tokens; unknown words map to [UNK]. The
    /// tokenizer matches its special tokens in the text itself, so a text
    /// holding "[EOS]" or "[PAD]" gets [UNK] there, never the special id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        let unk = SPECIAL_TOKENS.len() as u32 - 1;
        Ok(encoding
            .get_ids()
            .iter()
            .map(|&id| if id < unk { unk } else { id })
            .collect())
    }

    /// Text for `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let words: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| id as usize >= SPECIAL_TOKENS.len())
            .collect();
        let text = self
            .inner
            .decode(&words, true)
            .map_err(|e| anyhow!("decoding tokens: {e}"))?;
        // The word-level decoder puts a space before every token, punctuation included.
        Ok([" ?", " ,", " :", " ;", " .", " !"]
            .iter()
            .fold(text, |t, p| t.replace(p, &p[1..])))
    }

    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Every token, in id order.
    pub fn words(&self) -> Vec<String> {
        (0..self.vocab_size() as u32)
            .map(|id| self.token(id).unwrap_or_default())
            .collect()
    }
}

/// The trainer breaks frequency ties in hash order, which differs between runs.
/// Renumbering the words alphabetically (after the special tokens) makes equal
/// training text give an identical tokenizer, which identical-seed runs need.
fn with_sorted_vocab(tokenizer: &Tokenizer) -> Result<Tokenizer> {
    let mut json: serde_json::Value =
        serde_json::from_str(&tokenizer.to_string(false).map_err(|e| anyhow!("{e}"))?)?;
    let vocab = json
        .pointer_mut("/model/vocab")
        .and_then(|v| v.as_object_mut())
        .ok_or_else(|| anyhow!("the trained tokenizer has no word-level vocabulary"))?;
    let mut words: Vec<String> = vocab
        .keys()
        .filter(|w| !SPECIAL_TOKENS.contains(&w.as_str()))
        .cloned()
        .collect();
    words.sort();
    let ordered = SPECIAL_TOKENS.iter().map(|s| s.to_string()).chain(words);
    *vocab = ordered
        .enumerate()
        .map(|(id, word)| (word, serde_json::Value::from(id)))
        .collect();
    json.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| anyhow!("rebuilding the tokenizer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_tokens_in_the_text_encode_as_unknown() {
        let tok = TextTokenizer::default_vocabulary().expect("vocabulary");
        let ids = tok.encode("[EOS] red [PAD][BOS]").expect("encode");
        let red = tok.encode("red").expect("encode")[0];
        assert!(red as usize >= SPECIAL_TOKENS.len());
        assert_eq!(ids, vec![3, red, 3, 3]);
    }
}
