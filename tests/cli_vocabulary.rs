//! One CLI vocabulary: a long flag means the same thing, with the same value
//! name and the same default, in every command where it appears. The flags
//! that differ on purpose are listed in `EXCEPTIONS` with the reason.
use std::collections::BTreeMap;

use clap::CommandFactory;
use fusecap::cli::Cli;

/// Flags whose value name or default differs between commands by design.
const EXCEPTIONS: &[(&str, &str)] = &[
    ("fusion", "the strategy of a new model: one in train and init, a list in experiment"),
    ("batch-size", "train and experiment: the optimiser's batch (64); elsewhere images per forward pass (32)"),
    ("split", "eval and compare default to the test split; score and data filter to every record"),
    ("seed", "the seed of the command's own randomness: initialisation, data or sampling, each with its default"),
    ("from", "where a command starts from: the model directory train fine-tunes, the wheel or folder data easy-vqa imports"),
    ("eval-every", "train validates every 250 steps by default, experiment every tenth of --steps"),
];

#[derive(Debug, Clone, PartialEq)]
struct Meaning {
    value_names: Vec<String>,
    defaults: Vec<String>,
    takes_value: bool,
}

fn collect(cmd: &clap::Command, path: String, out: &mut BTreeMap<String, Vec<(String, Meaning)>>) {
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" || arg.is_hide_set() {
            continue;
        }
        let meaning = Meaning {
            value_names: arg
                .get_value_names()
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            defaults: arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect(),
            takes_value: arg.get_action().takes_values(),
        };
        out.entry(long.to_string())
            .or_default()
            .push((path.clone(), meaning));
    }
    for sub in cmd.get_subcommands() {
        collect(sub, format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_long_flag_has_one_meaning_or_is_a_listed_exception() {
    let mut flags = BTreeMap::new();
    collect(&Cli::command(), "fusecap".into(), &mut flags);
    let mut clashes = Vec::new();
    for (long, uses) in &flags {
        if EXCEPTIONS.iter().any(|(name, _)| name == long) {
            continue;
        }
        let (first_path, first) = &uses[0];
        for (path, meaning) in &uses[1..] {
            if meaning != first {
                clashes.push(format!(
                    "--{long}: {first_path} {first:?} but {path} {meaning:?}"
                ));
            }
        }
    }
    assert!(
        clashes.is_empty(),
        "flags with two meanings:\n{}",
        clashes.join("\n")
    );
}

#[test]
fn every_listed_exception_differs_somewhere() {
    let mut flags = BTreeMap::new();
    collect(&Cli::command(), "fusecap".into(), &mut flags);
    let needless: Vec<&str> = EXCEPTIONS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            let uses = flags.get(*name).map(Vec::as_slice).unwrap_or_default();
            !uses.iter().any(|(_, m)| *m != uses[0].1)
        })
        .collect();
    assert!(
        needless.is_empty(),
        "listed as exceptions but meaning one thing everywhere (drop them from the list): {needless:?}"
    );
}

#[test]
fn renamed_flags_are_refused_with_the_new_name() {
    for (args, new) in [
        (
            vec![
                "train", "--data", "m.jsonl", "--fusion", "concat", "--out", "o", "--init", "d",
            ],
            "--from",
        ),
        (
            vec![
                "train",
                "--data",
                "m.jsonl",
                "--fusion",
                "concat",
                "--out",
                "o",
                "--finetune",
                "d",
            ],
            "--from",
        ),
        (
            vec!["data", "synth", "--out", "o", "--json"],
            "--json <FILE>",
        ),
        (
            vec!["data", "filter", "--from", "m.jsonl", "--out", "o"],
            "--data",
        ),
        (
            vec!["caption", "samples/red-circle.png", "--fusion", "gated"],
            "--model pretrained-gated",
        ),
        (
            vec![
                "ask",
                "samples/red-circle.png",
                "is it red?",
                "--fusion",
                "concat",
            ],
            "--model pretrained-concat",
        ),
        (
            vec!["compare", "--data", "m.jsonl", "--fusion", "all"],
            "--model pretrained-concat --model pretrained-separate --model pretrained-gated",
        ),
        (
            vec!["compare", "--data", "m.jsonl", "--models", "a", "b"],
            "--model",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fusecap"))
            .args(&args)
            .output()
            .expect("run fusecap");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(new), "{args:?} should name {new}: {stderr}");
    }
}

#[test]
fn commands_that_run_a_model_take_device_threads_and_quiet() {
    let cli = Cli::command();
    for name in [
        "caption",
        "ask",
        "eval",
        "compare",
        "explain",
        "train",
        "experiment",
    ] {
        let cmd = cli.find_subcommand(name).expect("subcommand");
        for flag in ["device", "quiet", "threads"] {
            assert!(
                cmd.get_arguments().any(|a| a.get_long() == Some(flag)),
                "{name} lacks --{flag}"
            );
        }
    }
    let data = cli.find_subcommand("data").expect("data");
    let others = ["init", "score"].map(|name| cli.find_subcommand(name).expect("subcommand"));
    for cmd in others.into_iter().chain(data.get_subcommands()) {
        assert!(
            cmd.get_arguments().any(|a| a.get_long() == Some("quiet")),
            "{} lacks --quiet",
            cmd.get_name()
        );
    }
}

#[test]
fn data_writes_its_summary_to_the_json_file_and_quiet_silences_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = dir.path().join("summary.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fusecap"))
        .args([
            "data",
            "synth",
            "--count",
            "3",
            "--image-size",
            "16",
            "--quiet",
        ])
        .arg("--out")
        .arg(dir.path().join("d"))
        .arg("--json")
        .arg(&summary)
        .output()
        .expect("run fusecap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "--quiet printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&summary).expect("the summary file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["images"], 3, "{text}");
    let manifest = std::fs::read_to_string(dir.path().join("d/manifest.jsonl")).expect("manifest");
    assert_eq!(
        json["caption_records"].as_u64(),
        Some(manifest.matches("\"task\":\"caption\"").count() as u64),
        "{text}"
    );
}

#[test]
fn inference_threads_are_checked_and_used() {
    let caption = |threads: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fusecap"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["caption", "samples/red-circle.png", "--threads", threads])
            .output()
            .expect("run fusecap")
    };
    let refused = caption("0");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--threads 0"));
    let one = caption("1");
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    assert_eq!(
        one.stdout,
        caption("2").stdout,
        "thread counts change the caption"
    );
}
