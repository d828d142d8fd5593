//! `fusecap data`: make the synthetic data set, import easy-VQA, COCO and VQAv2,
//! or filter manifests. Each subcommand writes `OUT/manifest.jsonl` and prints a
//! summary on stdout.

use super::common::refuse_renamed;
use crate::data::coco::{convert_coco, CocoOptions, ImportSummary};
use crate::data::easy_vqa::convert_easy_vqa;
use crate::data::filter::{filter_manifests, RecordFilter};
use crate::data::scene::SceneKind;
use crate::data::synth::{write_dataset, SynthConfig};
use crate::data::vqav2::{convert_vqav2, TypeField, Vqav2Options};
use crate::report::write::write_json;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(after_help = "\
Every subcommand writes OUT/manifest.jsonl (JSONL, one caption or VQA record per line) and
prints a summary (--json FILE also writes it as JSON, --quiet prints none).
Exit codes: 0 success, 1 some inputs skipped (the rest were written), 2 error.

Examples:
  fusecap data synth --out data/scenes --count 10000 --seed 1
  fusecap data easy-vqa --from easy_vqa-1.0-py3-none-any.whl --out data/easy-vqa
  fusecap data filter --data data/easy-vqa/manifest.jsonl --out data/yes-no-shape \\
      --split train --type \"yes/no shape\"")]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Generate the synthetic shapes data set (captions and VQA), deterministically from a seed.
    #[command(after_help = SYNTH_HELP)]
    Synth(SynthArgs),
    /// Convert the easy-VQA data set (its PyPI wheel or unpacked folder).
    #[command(name = "easy-vqa", after_help = EASY_VQA_HELP)]
    EasyVqa(EasyVqaArgs),
    /// Convert COCO captions into caption records.
    #[command(after_help = COCO_HELP)]
    Coco(CocoArgs),
    /// Convert VQAv2 questions and annotations into VQA records.
    #[command(after_help = VQAV2_HELP)]
    Vqav2(Vqav2Args),
    /// Write the records of manifests that pass a filter as a new manifest.
    #[command(after_help = FILTER_HELP)]
    Filter(FilterArgs),
}

const SYNTH_HELP: &str = "\
Writes OUT/images/NNNNN.png, OUT/manifest.jsonl (one caption record per image, then its
questions) and OUT/scenes.jsonl (what each image shows). The same seed gives identical files.

Scenes hold 1-4 shapes (circle, square, triangle, star) in 8 colours and 2 sizes on a 3x3
grid. Question types: color, shape, size, count, exist, position, relation (over a third).

Examples:
  fusecap data synth --out data/scenes --count 10000 --seed 1
  fusecap data synth --out data/noisy --count 2000 --seed 2 --noise --image-size 96
  fusecap data synth --out data/probe --count 1000 --seed 13 --balanced --test-fraction 1
  fusecap data synth --out data/easy --count 5000 --kind easy --test-fraction 0.2";

const EASY_VQA_HELP: &str = "\
Reads easy_vqa/data/{train,test}/questions.json and images from the wheel (no Python needed)
and writes OUT/images/{train,test}/ID.png and OUT/manifest.jsonl with the official split.
Question types: shape, color, yes/no shape, yes/no color. Each image also gets a caption
record (\"a blue rectangle\") deduced from its questions. Questions whose image is not in
the wheel are skipped and counted (exit code 1).

Examples:
  pip download easy-vqa==1.0 --no-deps -d .
  fusecap data easy-vqa --from easy_vqa-1.0-py3-none-any.whl --out data/easy-vqa
  fusecap data easy-vqa --from unpacked-wheel/ --out data/easy-vqa --force";

const COCO_HELP: &str = "\
Images are not copied: the manifest refers to them relative to OUT. Images listed in the
captions file but absent from --images are skipped and counted (exit code 1).

Examples:
  fusecap data coco --captions annotations/captions_val2014.json --images val2014 --out data/coco-val
  fusecap data coco --captions annotations/captions_train2014.json --images train2014 \\
      --out data/coco-train --split train --keep-case";

const VQAV2_HELP: &str = "\
Joins questions and annotations by question_id; each record keeps the consensus answer and
all annotators' answers. Images are found as COCO_{subtype}_{id:012}.jpg (subtype from the
questions file, e.g. val2014) or as any file in --images ending with the zero-padded id.
Missing images are skipped and counted (exit code 1).

Examples:
  fusecap data vqav2 --questions v2_OpenEnded_mscoco_val2014_questions.json \\
      --annotations v2_mscoco_val2014_annotations.json --images val2014 --out data/vqav2-val
  fusecap data vqav2 --questions q.json --annotations a.json --images imgs --out out \\
      --question-type question-type --split test";

const FILTER_HELP: &str = "\
Keeps the records that pass every filter given; image paths are rewritten relative to OUT,
so the images stay where they are. Bad input lines are reported with file and line and
skipped (exit code 1). Train on the result like any manifest, e.g. for a curriculum stage.

Examples:
  fusecap data filter --data data/easy-vqa/manifest.jsonl --out data/yes-no-shape \\
      --split train --type \"yes/no shape\"
  fusecap data filter --data data/easy-vqa/manifest.jsonl --out data/yes-no-shape-positive \\
      --split train --type \"yes/no shape\" --without-word not --without-word no
  fusecap data filter --data data/easy-vqa/manifest.jsonl --out data/negated-no \\
      --split train --answer no --with-word not --with-word no
  fusecap data filter --data data/scenes/manifest.jsonl data/easy-vqa/manifest.jsonl \\
      --out data/captions --task caption";

/// Where the summary goes: stdout as text, and with `--json FILE` a JSON file.
#[derive(Args, Debug)]
pub struct SummaryArgs {
    // The earlier switch `--json` (no FILE) is refused by clap, naming `--json <FILE>`.
    /// Also write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No summary on stdout (warnings still go to stderr).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Manifests to read (JSONL).
    #[arg(long, value_name = "MANIFEST", num_args = 1.., required_unless_present = "renamed_from")]
    pub data: Vec<PathBuf>,
    /// The earlier spelling of --data, refused with a message naming it.
    #[arg(long = "from", value_name = "MANIFEST", num_args = 1.., hide = true)]
    pub renamed_from: Vec<PathBuf>,
    /// Folder to write manifest.jsonl into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Keep this split only (records without a split count as "train").
    #[arg(long)]
    pub split: Option<String>,
    /// Keep this task only.
    #[arg(long, value_parser = ["caption", "vqa"])]
    pub task: Option<String>,
    /// Keep questions of this type (repeatable; captions have no type).
    #[arg(long = "type", value_name = "TYPE")]
    pub question_types: Vec<String>,
    /// Keep questions with this answer (repeatable; captions have none).
    #[arg(long, value_name = "ANSWER")]
    pub answer: Vec<String>,
    /// Keep only questions holding this word, in any case (repeatable: any of them).
    #[arg(long, value_name = "WORD")]
    pub with_word: Vec<String>,
    /// Drop questions holding this word, in any case (repeatable).
    #[arg(long, value_name = "WORD")]
    pub without_word: Vec<String>,
    /// Overwrite an existing manifest in OUT.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub summary: SummaryArgs,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Folder to write the data set into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of images (at most 1,000,000).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Random seed; the same seed gives identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels.
    #[arg(long = "image-size", default_value_t = 64, value_name = "PIXELS")]
    pub size: u32,
    /// The earlier spelling of --image-size, refused with a message naming it.
    #[arg(long = "size", hide = true)]
    pub renamed_size: Option<u32>,
    /// Speckle the background with noise.
    #[arg(long)]
    pub noise: bool,
    /// Share of images in the test split.
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Questions per image (fewer where a scene has fewer to ask).
    #[arg(long = "questions-per-image", default_value_t = 6, value_name = "N")]
    pub questions: usize,
    /// The earlier spelling of --questions-per-image, refused with a message naming it.
    #[arg(long = "questions", hide = true)]
    pub renamed_questions: Option<usize>,
    /// Draw questions as training's scene stream does: balanced over type,
    /// template and answer, and "is there a red circle?" asked where red and
    /// circle sit on different objects (a binding probe for `eval`).
    #[arg(long)]
    pub balanced: bool,
    /// Multi-object scenes, or one shape per image like easy-VQA.
    #[arg(long, value_enum, default_value_t = KindArg::Scenes)]
    pub kind: KindArg,
    /// Overwrite an existing manifest in OUT.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub summary: SummaryArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    Scenes,
    Easy,
}

#[derive(Args, Debug)]
pub struct EasyVqaArgs {
    /// The easy-VQA wheel (easy_vqa-1.0-py3-none-any.whl) or its unpacked folder.
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// Folder to write the data set into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite an existing manifest in OUT.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub summary: SummaryArgs,
}

#[derive(Args, Debug)]
pub struct CocoArgs {
    /// COCO captions JSON (captions_train2014.json, ...).
    #[arg(long, value_name = "FILE")]
    pub captions: PathBuf,
    /// Folder holding the images.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Folder to write manifest.jsonl into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Split for every record [default: train/val/test from the captions file name].
    #[arg(long)]
    pub split: Option<String>,
    /// Keep captions as written (default: lower case, no final period).
    #[arg(long)]
    pub keep_case: bool,
    /// Overwrite an existing manifest in OUT.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub summary: SummaryArgs,
}

#[derive(Args, Debug)]
pub struct Vqav2Args {
    /// VQAv2 questions JSON (v2_OpenEnded_mscoco_*_questions.json).
    #[arg(long, value_name = "FILE")]
    pub questions: PathBuf,
    /// VQAv2 annotations JSON (v2_mscoco_*_annotations.json).
    #[arg(long, value_name = "FILE")]
    pub annotations: PathBuf,
    /// Folder holding the COCO images.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Folder to write manifest.jsonl into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Split for every record [default: from the questions file's data_subtype or name].
    #[arg(long)]
    pub split: Option<String>,
    /// Which VQAv2 field becomes question_type.
    #[arg(long, value_enum, default_value_t = TypeFieldArg::AnswerType)]
    pub question_type: TypeFieldArg,
    /// Overwrite an existing manifest in OUT.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub summary: SummaryArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TypeFieldArg {
    /// yes/no, number, other.
    AnswerType,
    /// VQAv2's question prefixes ("what color is the", ...).
    QuestionType,
}

/// Exit code when some inputs were skipped but the rest were written.
const EXIT_SOME_SKIPPED: u8 = 1;

pub fn run(args: DataArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DataCommand::Synth(a) => synth(a),
        DataCommand::EasyVqa(a) => easy_vqa(a),
        DataCommand::Coco(a) => coco(a),
        DataCommand::Vqav2(a) => vqav2(a),
        DataCommand::Filter(a) => filter(a),
    }
}

fn filter(a: FilterArgs) -> anyhow::Result<ExitCode> {
    refuse_renamed("--from", "--data", !a.renamed_from.is_empty())?;
    for path in &a.data {
        require("--data", path)?;
    }
    prepare_output(&a.out, a.force)?;
    let record_filter = RecordFilter {
        split: a.split,
        task: a.task,
        question_types: a.question_types,
        answers: a.answer,
        with_words: a.with_word,
        without_words: a.without_word,
    };
    let s = filter_manifests(&a.data, &record_filter, &a.out)?;
    for problem in &s.problems {
        eprintln!("warning: skipped {problem}");
    }
    print_summary(&a.summary, &s, || {
        format!(
            "wrote {}: kept {} of {} records",
            a.out.join("manifest.jsonl").display(),
            s.kept,
            s.read
        )
    })?;
    Ok(if s.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SOME_SKIPPED)
    })
}

/// Most images `data synth` makes in one data set: its manifest is built in memory.
pub const MAX_SYNTH_COUNT: usize = 1_000_000;

fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    refuse_renamed("--size", "--image-size", a.renamed_size.is_some())?;
    refuse_renamed(
        "--questions",
        "--questions-per-image",
        a.renamed_questions.is_some(),
    )?;
    if a.count > MAX_SYNTH_COUNT {
        anyhow::bail!(
            "--count {} is above the limit of {MAX_SYNTH_COUNT} images per data set; make several with different --seed and --out, and train on their manifests together",
            a.count
        );
    }
    prepare_output(&a.out, a.force)?;
    let cfg = SynthConfig {
        count: a.count,
        seed: a.seed,
        image_size: a.size,
        noise: a.noise,
        test_fraction: a.test_fraction,
        questions_per_image: a.questions,
        balanced: a.balanced,
        kind: match a.kind {
            KindArg::Scenes => SceneKind::Scenes,
            KindArg::Easy => SceneKind::Easy,
        },
    };
    let s = write_dataset(&cfg, &a.out)?;
    print_summary(&a.summary, &s, || {
        format!(
            "wrote {}: {} images ({} train, {} test), {} caption records, {} vqa records ({})",
            a.out.join("manifest.jsonl").display(),
            s.images,
            s.train_images,
            s.test_images,
            s.caption_records,
            s.vqa_records,
            counts(&s.question_types)
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn easy_vqa(a: EasyVqaArgs) -> anyhow::Result<ExitCode> {
    require("--from", &a.from)?;
    prepare_output(&a.out, a.force)?;
    let s = convert_easy_vqa(&a.from, &a.out)?;
    if s.questions_without_image > 0 {
        eprintln!(
            "warning: skipped {} questions whose image is not in {}",
            s.questions_without_image,
            a.from.display()
        );
    }
    if s.partial_captions > 0 || s.contradictory_images > 0 {
        eprintln!(
            "warning: {} captions name only the shape or colour; {} images have contradictory answers",
            s.partial_captions, s.contradictory_images
        );
    }
    print_summary(&a.summary, &s, || {
        format!(
            "wrote {}: {} images ({} train, {} test), {} vqa records ({}), {} caption records \
             ({} from questions alone, {} completed from pixels; pixel check agrees on {}/{})",
            a.out.join("manifest.jsonl").display(),
            s.train_images + s.test_images,
            s.train_images,
            s.test_images,
            s.vqa_records,
            counts(&s.question_types),
            s.caption_records,
            s.captions_from_questions,
            s.captions_from_pixels,
            s.pixel_check_agree,
            s.pixel_check_total
        )
    })?;
    Ok(if s.questions_without_image > 0 {
        ExitCode::from(EXIT_SOME_SKIPPED)
    } else {
        ExitCode::SUCCESS
    })
}

fn coco(a: CocoArgs) -> anyhow::Result<ExitCode> {
    require("--captions", &a.captions)?;
    require("--images", &a.images)?;
    prepare_output(&a.out, a.force)?;
    let opts = CocoOptions {
        split: a.split.clone(),
        keep_case: a.keep_case,
    };
    let s = convert_coco(&a.captions, &a.images, &a.out, &opts)?;
    finish_import(&a.out, &a.images, &a.summary, &s)
}

fn vqav2(a: Vqav2Args) -> anyhow::Result<ExitCode> {
    require("--questions", &a.questions)?;
    require("--annotations", &a.annotations)?;
    require("--images", &a.images)?;
    prepare_output(&a.out, a.force)?;
    let opts = Vqav2Options {
        split: a.split.clone(),
        type_field: match a.question_type {
            TypeFieldArg::AnswerType => TypeField::AnswerType,
            TypeFieldArg::QuestionType => TypeField::QuestionType,
        },
    };
    let s = convert_vqav2(&a.questions, &a.annotations, &a.images, &a.out, &opts)?;
    finish_import(&a.out, &a.images, &a.summary, &s)
}

/// Checks an input before anything is written.
fn require(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    if !path.exists() {
        anyhow::bail!("{flag} {} does not exist: check the path", path.display());
    }
    Ok(())
}

/// Reports what an import skipped on stderr and the summary on stdout.
fn finish_import(
    out: &std::path::Path,
    images: &std::path::Path,
    summary: &SummaryArgs,
    s: &ImportSummary,
) -> anyhow::Result<ExitCode> {
    if s.missing_images > 0 {
        eprintln!(
            "warning: {} images not found in {} (e.g. {}); their {} records were skipped",
            s.missing_images,
            images.display(),
            s.missing_examples.join(", "),
            s.records_without_image
        );
    }
    if s.skipped > 0 {
        eprintln!("warning: skipped {} {}", s.skipped, s.skipped_reason);
    }
    print_summary(summary, s, || {
        format!(
            "wrote {}: {} records over {} images (split {})",
            out.join("manifest.jsonl").display(),
            s.records,
            s.images,
            s.split.as_deref().unwrap_or("none, counts as train")
        )
    })?;
    Ok(if s.missing_images > 0 {
        ExitCode::from(EXIT_SOME_SKIPPED)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn print_summary<T: Serialize>(
    args: &SummaryArgs,
    summary: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        write_json(path, summary)?;
    }
    if !args.quiet {
        println!("{}", text());
    }
    Ok(())
}

fn counts(map: &std::collections::BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates `out` for a new data set; refuses to overwrite an existing manifest unless `force`.
fn prepare_output(out: &Path, force: bool) -> anyhow::Result<()> {
    refuse_overwrite(out, "manifest.jsonl", "the data set", force)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create folder {}", out.display()))
}

/// Refuses an `--out` that is a file, or that holds `marker` (the file that
/// makes it a `what`) unless `force`.
pub fn refuse_overwrite(out: &Path, marker: &str, what: &str, force: bool) -> anyhow::Result<()> {
    if out.exists() && !out.is_dir() {
        bail!(
            "--out {} is a file: give a folder to write {what} into",
            out.display()
        );
    }
    let existing = out.join(marker);
    if existing.exists() && !force {
        bail!(
            "{} already exists: pass --force to overwrite it, or choose another --out",
            existing.display()
        );
    }
    Ok(())
}
