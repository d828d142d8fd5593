//! Decoding options shared by `caption` and `ask`.
use clap::Args;

use crate::generate::GenerateOptions;

#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Longest output, in tokens.
    #[arg(long, default_value_t = 24)]
    pub max_new_tokens: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

impl DecodeArgs {
    pub fn options(&self) -> GenerateOptions {
        GenerateOptions { max_new_tokens: self.max_new_tokens, ..GenerateOptions::default() }
    }
}
