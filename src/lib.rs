//! fusecap: caption images and answer questions about them with an
//! encoder–decoder transformer whose cross-attention fusion is a choice.

pub mod allocator;
pub mod atomic;
pub mod cli;
pub mod data;
pub mod diff;
pub mod encoders;
pub mod generate;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod plot;
pub mod report;
pub mod tokenizer;
pub mod train;
