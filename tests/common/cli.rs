//! Running the built `fusecap` binary as a user does, and reading what it writes.
#![allow(dead_code)]
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Four colours of the scenes' palette, for tiny hand-drawn manifests.
pub const FOUR_COLORS: [(&str, [u8; 3]); 4] = [
    ("red", [220, 30, 30]),
    ("blue", [30, 60, 220]),
    ("green", [30, 180, 60]),
    ("yellow", [230, 210, 30]),
];

/// `fusecap ARGS` run from `dir`.
pub fn fusecap(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fusecap"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run fusecap")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}
