//! What a model's outputs are worth: running a model over manifest records,
//! scoring the outputs, comparing models, and the reports that say so. The
//! `eval`, `compare`, `experiment`, `explain` and `score` commands are thin
//! layers over this module.
pub mod attention;
pub mod binding;
pub mod compare;
pub mod compare_markdown;
pub mod disagreement;
pub mod eval_report;
pub mod evaluation;
pub mod explain;
pub mod facts;
pub mod metrics;
pub mod metrics_table;
pub mod model_report;
pub mod prediction;
pub mod records;
pub mod score;
pub mod summary;
pub mod text;
pub mod verdict;
pub mod write;
