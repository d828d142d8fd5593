//! `kill -9` at random points of a training run, each followed by `--resume`,
//! ends with the same bytes as a run that was never interrupted.
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fusecap::data::synth::{write_dataset, SynthConfig};
use fusecap::model::dir::{CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use fusecap::model::{Config, Fusion};
use fusecap::train::{CHECKPOINT_FILE, LOG_FILE, STATE_FILE};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const STEPS: usize = 60;
const CHECKPOINT_EVERY: usize = 3;
const KILLS: usize = 5;
/// Kill points lie between the first checkpoint and this many steps before
/// the end, so that a slow test process still kills a run that is running.
const END_MARGIN: usize = 15;

fn start(data: &Path, config: &Path, out: &Path, resume: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fusecap"));
    cmd.args(["train", "--fusion", "gated", "--steps", &STEPS.to_string()])
        .args(["--batch-size", "8", "--eval-every", "100", "--threads", "2"])
        .args(["--checkpoint-every", &CHECKPOINT_EVERY.to_string()])
        .args(["--save-dtype", "f32", "--seed", "4", "--quiet"])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out);
    if resume {
        cmd.arg("--resume");
    }
    cmd.stderr(std::process::Stdio::null())
        .spawn()
        .expect("start fusecap train")
}

/// The complete records of training.jsonl (none before the first step).
fn log_records(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join(LOG_FILE))
        .map(|text| {
            text.lines()
                .filter(|l| l.ends_with('}'))
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What a record says about the training itself: without times and speeds.
fn deterministic(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(map) = record.as_object_mut() {
        map.remove("elapsed_s");
        map.remove("samples_per_sec");
    }
    record
}

#[test]
fn killing_training_at_random_points_and_resuming_changes_no_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let cfg = SynthConfig {
        count: 24,
        seed: 2,
        image_size: 16,
        ..SynthConfig::default()
    };
    write_dataset(&cfg, &data).expect("synth");
    let manifest = data.join("manifest.jsonl");
    let config = dir.path().join("tiny.json");
    let tiny = serde_json::to_string(&Config::tiny(Fusion::Gated, 10)).expect("json");
    std::fs::write(&config, tiny).expect("config");

    let straight = dir.path().join("straight");
    let begun = Instant::now();
    let status = start(&manifest, &config, &straight, false)
        .wait()
        .expect("wait");
    assert!(status.success(), "the uninterrupted run failed");
    // A random wait of up to one step after the kill point's log line lands
    // the kill anywhere in the next step: its computation, the log append,
    // or a checkpoint being written.
    let step_time = begun.elapsed() / STEPS as u32;

    // Each run of the test kills at other points; the seed is in every message.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(18, |d| d.as_nanos() as u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut points: Vec<usize> = (0..KILLS)
        .map(|_| rng.random_range(CHECKPOINT_EVERY + 1..STEPS - END_MARGIN))
        .collect();
    points.sort_unstable();
    let killed = dir.path().join("killed");
    let mut kills = Vec::new();
    for (i, &point) in points.iter().enumerate() {
        let mut child = start(&manifest, &config, &killed, i > 0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while log_records(&killed).len() < point {
            assert!(
                Instant::now() < deadline,
                "training never reached step {point} (seed {seed})"
            );
            if let Some(status) = child.try_wait().expect("poll") {
                panic!("training stopped before step {point} with {status} (seed {seed})");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(step_time.mul_f64(rng.random_range(0.0..1.0)));
        child.kill().expect("kill -9");
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "run {i} finished all {STEPS} steps before it was killed at step {point} (seed {seed})"
        );
        kills.push(log_records(&killed).len());
        // The first checkpoint came before the kill point: there is a run to resume.
        assert!(killed.join(STATE_FILE).is_file() && killed.join(CHECKPOINT_FILE).is_file());
    }
    let status = start(&manifest, &config, &killed, true)
        .wait()
        .expect("wait");
    assert!(
        status.success(),
        "the last resume failed (kills after steps {kills:?}, seed {seed})"
    );

    for file in [
        CHECKPOINT_FILE,
        WEIGHTS_FILE,
        STATE_FILE,
        CONFIG_FILE,
        TOKENIZER_FILE,
    ] {
        let a = std::fs::read(straight.join(file)).expect("straight");
        let b = std::fs::read(killed.join(file)).expect("killed");
        assert!(
            a == b,
            "{file} differs after {KILLS} kills after steps {kills:?} (seed {seed})"
        );
    }
    // The log holds each step once, with the same losses as the uninterrupted run.
    let a: Vec<Value> = log_records(&straight).iter().map(deterministic).collect();
    let b: Vec<Value> = log_records(&killed).iter().map(deterministic).collect();
    assert_eq!(a.len(), STEPS);
    assert!(
        a == b,
        "the logs differ after kills after steps {kills:?} (seed {seed})"
    );
}
