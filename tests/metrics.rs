//! Metrics against values worked out by hand from the reference algorithms
//! (pycocoevalcap's bleu_scorer / cider_scorer / rouge, the official vqaEval).
//! Each test derives its expected number in a comment.

use fusecap::metrics::{
    caption_scores, normalize_answer, vqa_accuracy, vqa_scores, CaptionScores, VqaItem,
};

fn s(x: &str) -> String {
    x.to_string()
}

fn score(pairs: &[(&str, &[&str])]) -> CaptionScores {
    let hyps: Vec<String> = pairs.iter().map(|(h, _)| s(h)).collect();
    let refs: Vec<Vec<String>> = pairs
        .iter()
        .map(|(_, rs)| rs.iter().map(|r| s(r)).collect())
        .collect();
    caption_scores(&hyps, &refs)
}

fn close(actual: f64, expected: f64, tol: f64) {
    assert!(
        (actual - expected).abs() <= tol,
        "expected {expected}, got {actual} (tolerance {tol})"
    );
}

// ---------------------------------------------------------------- BLEU

#[test]
fn perfect_match_gives_bleu_one_and_rouge_one() {
    // Every n-gram matches: p_k = (g + 1e-15) / (g + 1e-9) = 1 - O(1e-9); c = r → no
    // brevity penalty. LCS = length → P = R = 1 → ROUGE-L = 1.
    let sc = score(&[("A red circle on a table.", &["a red circle on a table"])]);
    for b in sc.bleu {
        close(b, 1.0, 1e-8);
    }
    close(sc.rouge_l, 1.0, 1e-12);
    close(sc.exact_match, 1.0, 0.0);
}

#[test]
fn brevity_penalty_and_smoothing_constants() {
    // hyp "a red circle" (c = 3), ref of 6 tokens (r = 6).
    // p1 = p2 = p3 = 1 (all 3/2/1 n-grams match); p4 = (0 + 1e-15)/(0 + 1e-9) = 1e-6.
    // BP = exp(1 - r/c) = exp(1 - 2) = e^-1.
    // BLEU-1..3 = e^-1 ≈ 0.367879; BLEU-4 = (1e-6)^(1/4) · e^-1 ≈ 0.0316228 · 0.367879 ≈ 0.0116334.
    let sc = score(&[("a red circle", &["a red circle on a table"])]);
    let e1 = (-1.0f64).exp();
    close(sc.bleu[0], e1, 1e-8);
    close(sc.bleu[2], e1, 1e-8);
    close(sc.bleu[3], 1e-6f64.powf(0.25) * e1, 1e-8);
}

#[test]
fn brevity_uses_closest_reference_length() {
    // hyp length 3; refs of length 6 and 2. "closest" picks 2 (distance 1), so
    // c = 3 > r = 2: no penalty. All unigrams match ("a" clipped at 2 ≥ 1), so
    // BLEU-1 ≈ 1. ("average" would use r = 4 and give exp(1 - 4/3) ≈ 0.7165.)
    let sc = score(&[("a red circle", &["a red circle on a table", "red circle"])]);
    close(sc.bleu[0], 1.0, 1e-8);
}

#[test]
fn brevity_penalty_is_corpus_level() {
    // Sentence A: c = 4, r = 4, all match. Sentence B: "x y" vs 4-token ref: c = 2, r = 4.
    // Corpus: p1 = 6/6, c = 6, r = 8 → BLEU-1 = exp(1 - 8/6) = exp(-1/3) ≈ 0.716531.
    // (Averaging sentence scores would give (1 + e^-1)/2 ≈ 0.684.)
    let sc = score(&[("w x y z", &["w x y z"]), ("x y", &["x y z w"])]);
    close(sc.bleu[0], (-1.0f64 / 3.0).exp(), 1e-8);
}

#[test]
fn clipped_counts() {
    // hyp "the the the the" vs ref "the cat": "the" count 4 clipped to 1 → p1 = 1/4.
    // c = 4 > r = 2 → no penalty. BLEU-1 = (1 + 1e-15)/(4 + 1e-9) ≈ 0.25.
    let sc = score(&[("the the the the", &["the cat"])]);
    close(sc.bleu[0], 0.25, 1e-9);
}

// ---------------------------------------------------------------- CIDEr-D

#[test]
fn cider_d_tiny_corpus_by_hand() {
    // N = 2 images, no word shared between them, so every n-gram weight is
    // w = ln 2 - ln 1 = ln 2 (ref n-grams have df 1, unseen ones df max(1, 0) = 1).
    // Image 1: hyp = ref = "red circle". 1-grams: (w² + w²)/(w√2 · w√2) = 1;
    //   2-grams: 1; 3-,4-grams: empty → 0. Bigram lengths equal → penalty 1.
    //   Score = (1 + 1 + 0 + 0)/4 / 1 ref × 10 = 5.
    // Image 2: hyp "blue circle", ref "blue square". 1-grams: only "blue" matches:
    //   w² / (w√2 · w√2) = 1/2; 2-grams: 0. Score = (0.5/4) × 10 = 1.25.
    // Corpus = (5 + 1.25)/2 = 3.125.
    let sc = score(&[
        ("red circle", &["red circle"]),
        ("blue circle", &["blue square"]),
    ]);
    close(sc.cider_d, 3.125, 1e-9);
}

#[test]
fn cider_d_words_in_every_image_carry_no_weight() {
    // "red" appears in both images' refs: df = 2 = N → weight ln2 - ln2 = 0.
    // Image 1: hyp = ref "red circle": 1-grams {red:0, circle:w} → cos 1; 2-grams 1 → 5.
    // Image 2: hyp "red circle", ref "red square": only "red" overlaps, weight 0 → 0.
    // Corpus = 2.5.
    let sc = score(&[
        ("red circle", &["red circle"]),
        ("red circle", &["red square"]),
    ]);
    close(sc.cider_d, 2.5, 1e-9);
}

#[test]
fn cider_d_clipping_and_length_penalty() {
    // All weights w = ln 2 (no shared words between the two images).
    // Image 1: hyp "red circle red circle", ref "red circle".
    //   1-grams: hyp {red:2w, circle:2w} (norm 2w√2), ref {red:w, circle:w} (norm w√2);
    //     clipped: min(2w, w)·w ×2 = 2w² → 2w² / 4w² = 1/2 (unclipped would be 1).
    //   2-grams: hyp {"red circle":2w, "circle red":w} (norm w√5), ref {"red circle":w}:
    //     min(2w, w)·w / (w√5 · w) = 1/√5.
    //   3-,4-grams: ref has none → 0.
    //   Bigram counts 3 vs 1 → delta 2 → penalty exp(-4/72) = exp(-1/18).
    //   Score = (1/2 + 1/√5)/4 · exp(-1/18) · 10 ≈ 2.240055.
    // Image 2: hyp = ref "blue square" → 5 (as above).
    let image1 = (0.5 + 1.0 / 5f64.sqrt()) / 4.0 * (-1.0f64 / 18.0).exp() * 10.0;
    let sc = score(&[
        ("red circle red circle", &["red circle"]),
        ("blue square", &["blue square"]),
    ]);
    close(sc.cider_d, (image1 + 5.0) / 2.0, 1e-9);
}

#[test]
fn cider_d_of_a_single_image_is_zero() {
    // N = 1 → ln N = 0 and every df is 1 → every weight is 0 (as in pycocoevalcap).
    let sc = score(&[("a red circle", &["a red circle"])]);
    close(sc.cider_d, 0.0, 0.0);
}

#[test]
fn cider_d_averages_over_references() {
    // Image 1 has two refs: one identical 2-word caption (5 per the first test,
    // before dividing) and one disjoint caption (0) → (5 + 0)/2 = 2.5.
    // Image 2: identical → 5. Corpus (2.5 + 5)/2 = 3.75.
    // Weights: all n-grams have df 1 with N = 2, so they are all w = ln 2.
    let sc = score(&[
        ("red circle", &["red circle", "green star"]),
        ("blue square", &["blue square"]),
    ]);
    close(sc.cider_d, 3.75, 1e-9);
}

// ---------------------------------------------------------------- ROUGE-L

#[test]
fn rouge_l_by_hand() {
    // hyp "red circle on table" (4) vs ref "a red circle on the table" (6): LCS = 4.
    // P = 1, R = 2/3, β² = 1.44: F = 2.44 · (2/3) / (2/3 + 1.44) = 4.88 / 6.32 ≈ 0.772152.
    let sc = score(&[("red circle on table", &["a red circle on the table"])]);
    close(sc.rouge_l, 4.88 / 6.32, 1e-12);
}

#[test]
fn rouge_l_takes_precision_and_recall_maxima_separately() {
    // ref1 "red circle": LCS 2 → P 2/4, R 1. ref2 (8 tokens, contains all 4 hyp
    // words in order): P 1, R 1/2. Max P = 1, max R = 1 → F = 1.
    let sc = score(&[(
        "red circle on table",
        &["red circle", "red circle on table in a big room"],
    )]);
    close(sc.rouge_l, 1.0, 1e-12);
}

// ---------------------------------------------------------------- misc caption

#[test]
fn exact_match_ignores_case_and_punctuation() {
    let sc = score(&[
        ("A red circle.", &["a blue square", "a red circle"]),
        ("a red circle", &["a blue square"]),
    ]);
    close(sc.exact_match, 0.5, 0.0);
    assert_eq!(sc.n, 2);
}

#[test]
fn empty_corpus_and_empty_hypothesis_do_not_panic() {
    let empty = caption_scores(&[], &[]);
    assert_eq!(empty.n, 0);
    let sc = score(&[("", &["a cat"]), ("a dog", &[])]);
    assert!(sc
        .bleu
        .iter()
        .chain([&sc.cider_d, &sc.rouge_l])
        .all(|x| x.is_finite()));
    close(sc.rouge_l, 0.0, 0.0);
}

// ---------------------------------------------------------------- VQA

fn ten(matching: usize, answer: &str) -> Vec<String> {
    (0..10)
        .map(|i| {
            if i < matching {
                s(answer)
            } else {
                format!("other{i}")
            }
        })
        .collect()
}

#[test]
fn vqa_leave_one_out_rule() {
    // k of 10 humans agree. Leaving out one of the k matches leaves k-1 matches;
    // leaving out a non-match leaves k. acc = mean over the 10 subsets of min(m/3, 1).
    // k=1: 9 × 1/3 + 1 × 0           = 3   → 0.3
    // k=2: 8 × 2/3 + 2 × 1/3         = 6   → 0.6
    // k=3: 7 × 1   + 3 × 2/3         = 9   → 0.9
    // k=4: 6 × 1   + 4 × 1           = 10  → 1.0
    for (k, expected) in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)] {
        close(vqa_accuracy("red", "red", &ten(k, "red")), expected, 1e-12);
    }
}

#[test]
fn vqa_normalisation() {
    assert_eq!(normalize_answer("Two"), "2");
    assert_eq!(normalize_answer("a dog."), "dog");
    assert_eq!(normalize_answer("  The Dog's bone!  "), "dog's bone");
    assert_eq!(normalize_answer("dont"), "don't");
    // Normalisation applies to predictions and human answers alike: "two" and
    // "2" and "Two." all count as the same answer → 3 of 10 agree → 0.9.
    let mut humans = ten(0, "");
    humans[0] = s("2");
    humans[1] = s("two");
    humans[2] = s("Two.");
    close(vqa_accuracy("TWO", "2", &humans), 0.9, 1e-12);
}

#[test]
fn vqa_single_answer_is_exact_match_after_normalisation() {
    close(vqa_accuracy("A dog.", "dog", &[]), 1.0, 0.0);
    close(vqa_accuracy("cat", "dog", &[s("dog")]), 0.0, 0.0);
}

#[test]
fn vqa_scores_per_type() {
    let item = |p: &str, a: &str, t: Option<&str>| VqaItem {
        prediction: s(p),
        answer: s(a),
        answers: vec![],
        question_type: t.map(s),
    };
    let scores = vqa_scores(&[
        item("red", "red", Some("color")),
        item("blue", "red", Some("color")),
        item("3", "three", Some("count")),
        item("yes", "no", None),
    ]);
    // Accuracy: 1 + 0 + 1 + 0 over 4 = 0.5; color 1/2 over 2; count 1 over 1.
    close(scores.accuracy, 0.5, 1e-12);
    close(scores.exact_match, 0.5, 1e-12);
    assert_eq!(scores.n, 4);
    assert_eq!(scores.per_type.len(), 2);
    assert_eq!(scores.per_type["color"], (0.5, 2));
    assert_eq!(scores.per_type["count"], (1.0, 1));
}
