//! VQA accuracy equals the official VQA evaluation (`vqaEval.py`,
//! github.com/GT-Vision-Lab/VQA) on the cases of
//! tests/fixtures/vqa_reference.json, which scripts/vqa_reference.py generated
//! by running the official algorithm. Python is not needed here.
use fusecap::metrics::{vqa_accuracy, vqa_scores, VqaItem};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    prediction: String,
    answers: Vec<String>,
    accuracy: f64,
}

#[derive(Deserialize)]
struct Fixture {
    overall: f64,
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vqa_reference.json"
    );
    let text = std::fs::read_to_string(path).expect("read the fixture");
    serde_json::from_str(&text).expect("parse the fixture")
}

#[test]
fn every_case_scores_as_the_official_evaluation() {
    let fixture = fixture();
    assert!(
        fixture.cases.len() >= 300,
        "only {} cases",
        fixture.cases.len()
    );
    let wrong: Vec<String> = fixture
        .cases
        .iter()
        .filter_map(|c| {
            let got = vqa_accuracy(&c.prediction, &c.answers[0], &c.answers);
            ((got - c.accuracy).abs() > 1e-9).then(|| {
                format!(
                    "{:?} vs {:?}: fusecap {got}, official {}",
                    c.prediction, c.answers, c.accuracy
                )
            })
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ:\n{}",
        wrong.len(),
        fixture.cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn overall_accuracy_equals_the_official_evaluation() {
    let fixture = fixture();
    let items: Vec<VqaItem> = fixture
        .cases
        .iter()
        .map(|c| VqaItem {
            prediction: c.prediction.clone(),
            answer: c.answers[0].clone(),
            answers: c.answers.clone(),
            question_type: Some("all".into()),
        })
        .collect();
    let scores = vqa_scores(&items);
    assert_eq!(scores.n, fixture.cases.len());
    assert!(
        (scores.accuracy - fixture.overall).abs() < 1e-9,
        "fusecap {}, official {}",
        scores.accuracy,
        fixture.overall
    );
    assert!((scores.per_type["all"].0 - fixture.overall).abs() < 1e-9);
}

/// The fixture exercises the quirks: cases where the official rule and
/// "always normalise both sides" disagree, and partial credit.
#[test]
fn the_fixture_covers_the_quirks() {
    let fixture = fixture();
    let normalised_always = |c: &Case| {
        let p = fusecap::metrics::normalize_answer(&c.prediction);
        let m = c
            .answers
            .iter()
            .filter(|a| fusecap::metrics::normalize_answer(a) == p)
            .count();
        m > 0
    };
    let agreeing_unmatched = fixture
        .cases
        .iter()
        .filter(|c| c.answers.iter().all(|a| a.trim() == c.answers[0].trim()))
        .filter(|c| c.accuracy == 0.0 && normalised_always(c))
        .count();
    assert!(agreeing_unmatched >= 10, "{agreeing_unmatched}");
    for partial in [0.3, 0.6, 0.9] {
        assert!(fixture
            .cases
            .iter()
            .any(|c| (c.accuracy - partial).abs() < 1e-12));
    }
}
