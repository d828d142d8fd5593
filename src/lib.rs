//! fusecap: caption images and answer questions about them with an
//! encoder–decoder transformer whose cross-attention fusion is a choice.

pub mod binding;
pub mod cli;
pub mod data;
pub mod diff;
pub mod evaluate;
pub mod generate;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod tokenizer;
pub mod train;
