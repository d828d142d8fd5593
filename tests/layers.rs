//! The library is a stack: each top-level module names only modules of the
//! layers below its own, so no module reaches up and no two import each other.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top to bottom. A module may use the modules of any lower layer, none of
/// its own layer or above.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["report", "train"],
    &["pipeline"],
    &["generate", "data"],
    &["model"],
    &["encoders", "tokenizer", "metrics", "plot", "diff"],
    &["atomic", "allocator"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/report/x.rs` is `report`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The modules a file names as `crate::NAME`.
fn used_modules(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut unknown = BTreeSet::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "main" || module == "lib" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unknown.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        for used in used_modules(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                None => {
                    unknown.insert(used);
                }
                Some(layer) if layer <= own => upward.push(format!(
                    "{} ({module}) uses {used}, which is not below it",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS (place each in its layer): {unknown:?}"
    );
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}

#[test]
fn the_layer_check_sees_a_use_of_a_module() {
    let used =
        used_modules("use crate::pipeline::{Query, load_model};\nlet x = crate::model::dir::X;");
    assert_eq!(
        used,
        BTreeSet::from(["pipeline".to_string(), "model".to_string()])
    );
}
