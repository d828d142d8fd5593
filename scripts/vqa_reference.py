#!/usr/bin/env python3
"""Reference VQA accuracies for tests/vqa_reference.rs.

Scores a generated set of questions with the algorithm of the official VQA
evaluation, `vqaEval.py` of the VQA challenge (github.com/GT-Vision-Lab/VQA,
PythonEvaluationTools/vqaEvaluation/vqaEval.py), transcribed step by step,
quirks included, and writes them as a JSON fixture:

    python3 scripts/vqa_reference.py tests/fixtures/vqa_reference.json

The cases cover: agreeing and disagreeing human answers (the official code
normalises only when they disagree), every entry of the contraction table and
`lets` (not in it), periods (kept before a digit, at most 32 deleted), digits
(Python's `\\d` is any Unicode decimal digit), Unicode whitespace (`str.strip()`
and `str.split()`), number words, articles, every punctuation mark, and
random mixtures of all of these. Needs Python 3 and nothing else; the
generator is seeded, so the output is the same on every run of one Python
version (the Unicode tables are those of the running Python; the file records
the version).
"""
import json
import random
import re
import sys
import unicodedata

# ------------------------------------------------------------------ the algorithm
# The tables below are the official ones (vqaEval.py, VQAEval.__init__).

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't",
    "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = ["a", "an", "the"]
# The official regexes, as written there. `(?!<=\d)` is a lookahead for the
# text "<=" and a digit, which a "." never is: it always holds.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
         ">", "<", "@", "`", ",", "?", "!"]


def process_punctuation(in_text):
    out_text = in_text
    for p in PUNCT:
        if (p + " " in in_text or " " + p in in_text) or COMMA_STRIP.search(in_text) is not None:
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    # The official call is `periodStrip.sub("", outText, re.UNICODE)`: the
    # third positional argument of `sub` is `count`, so at most
    # int(re.UNICODE) == 32 periods are deleted.
    return PERIOD_STRIP.sub("", out_text, count=int(re.UNICODE))


def process_digit_article(in_text):
    words = []
    for word in in_text.lower().split():
        word = NUMBERS.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def accuracy(prediction, human_answers):
    """The official per-question accuracy (VQAEval.evaluate)."""
    # Answers are dicts with an id, as in the VQA annotations: the official
    # leave-one-out compares whole dicts, so each subset drops exactly one.
    gts = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(human_answers)]
    for gt in gts:
        gt["answer"] = gt["answer"].replace("\n", " ").replace("\t", " ").strip()
    res = prediction.replace("\n", " ").replace("\t", " ").strip()
    if len(set(gt["answer"] for gt in gts)) > 1:
        for gt in gts:
            gt["answer"] = process_digit_article(process_punctuation(gt["answer"]))
        res = process_digit_article(process_punctuation(res))
    accs = []
    for left_out in gts:
        others = [gt for gt in gts if gt != left_out]
        matching = [gt for gt in others if gt["answer"] == res]
        accs.append(min(1, float(len(matching)) / 3))
    return float(sum(accs)) / len(accs)


# ------------------------------------------------------------------ the cases

FILLERS = ["no", "blue", "2", "cat", "red ball", "yes", "3", "green", "dog", "left"]
# Every character Python's str.isspace() accepts, and some it does not.
WHITESPACE = [chr(c) for c in range(0x110000) if chr(c).isspace()]
NOT_WHITESPACE = ["\u200b", "\u180e", "\ufeff", "\u2060"]
# Decimal digits of several scripts (Python's \d), and numeric characters that are not.
DIGITS = ["0", "7", "\u0663", "\u06f5", "\u0967", "\u0e52", "\uff15", "\U0001d7d8", "\u1040"]
NOT_DIGITS = ["\u00b2", "\u00bd", "\u2167", "\u2460", "\u0f33", "\U00010107"]


def build_cases(rng):
    cases = []

    def add(prediction, answers):
        cases.append({"prediction": prediction, "answers": list(answers)})

    def mix(k, target, variants=None):
        """k answers equal to `target` (or cycling through `variants`), the rest fillers."""
        forms = variants or [target]
        answers = [forms[i % len(forms)] for i in range(k)]
        answers += [f for f in FILLERS if f not in answers][: 10 - k]
        rng.shuffle(answers)
        return answers

    # Leave-one-out counts 0..10, with agreeing and disagreeing humans.
    for k in range(11):
        add("red", mix(k, "red"))
        add("Red.", mix(k, "red"))
    # All ten humans agree: nothing is normalised, only stripped.
    for answer, predictions in [
        ("yes", ["yes", " yes ", "\tyes\n", "Yes", "yes.", "yes!", "the yes", "YES"]),
        ("Yes.", ["Yes.", "yes", "Yes"]),
        ("two", ["2", "two", "Two"]),
        ("dont", ["don't", "dont"]),
        ("red ball", ["red ball", "red  ball", "a red ball", "red\u00a0ball"]),
        ("", ["", " ", "none"]),
    ]:
        for p in predictions:
            add(p, [answer] * 10)
    # Humans that agree only once stripped, or disagree only by inner spacing.
    add("Yes", ["yes", " yes", "yes\n", "\tyes", "yes\u3000", "\u00a0yes", "yes", "yes", "yes", "yes"])
    add("yes", ["yes", " yes", "yes\n", "\tyes", "yes\u3000", "\u00a0yes", "yes", "yes", "yes", "yes"])
    add("red ball", ["red ball"] * 5 + ["red  ball"] * 5)
    add("Red Ball", ["red ball"] * 5 + ["red\u2003ball"] * 5)
    add("yes", ["yes"] * 9 + ["yes\u200b"])

    # Every contraction, with the other form among the humans.
    for i, (short, full) in enumerate(CONTRACTIONS.items()):
        answers = mix(6, short, [short, full, short.upper() if i % 3 == 0 else short])
        add([short, full, "the " + short, short.capitalize()][i % 4], answers)
    for p in ["lets", "let's", "Lets", "LET'S"]:
        add(p, mix(6, "lets", ["lets", "let's"]))
    add("im", mix(4, "Im", ["Im", "I'm", "im"]))

    # Number words and articles.
    for word, digit in NUMBERS.items():
        add(word.capitalize(), mix(4, digit, [digit, word, "the " + word]))
        add(digit, mix(3, word, [word, word.upper() + "."]))
    for p in ["eleven", "11", "a", "the", "an", "", "a 2", "an apple", "the the dog", "one two three"]:
        add(p, mix(5, "apple", ["apple", "an apple", "the", "eleven", "1 2 3", "dog"]))

    # Every punctuation mark: inside a word, next to a space, with a digit,digit.
    for p in PUNCT:
        add("t shirt", mix(4, "t" + p + "shirt", ["t" + p + "shirt", "tshirt", "t shirt"]))
        add("tshirt", mix(4, "t" + p + "shirt", ["t" + p + "shirt", "tshirt", "t shirt"]))
        add("yes", mix(4, "yes " + p, ["yes " + p, p + " yes", "yes" + p]))
        add("1000" + p + "x", mix(3, "1,000" + p + "x", ["1,000" + p + "x", "1000x", "1000 x"]))
        add("1000x", mix(3, "1,000" + p + "x", ["1,000" + p + "x", "1000x", "1000 x"]))

    # Periods.
    for p in ["dog.", "dog", "2.5", "2 5", "25", "...", "", ".5", "5.", "5", "a.b.c", "abc",
              "e.g.", "eg", "3.14.", "3.14", "x. 1", "x 1"]:
        add(p, mix(4, "dog.", ["dog.", "2.5", "...", ".5", "5.", "a.b.c", "e.g.", "3.14.", "x. 1"]))
    for n in [30, 31, 32, 33, 34, 40]:
        long = "x." * n
        add(long, mix(4, long, [long, "x" * n, "x." * 32 + "x" * (n - 32) if n > 32 else long]))
        add("x" * n, mix(4, long, [long, "x" * n]))
        add("." * n, mix(3, "." * n, ["." * n, "", "." * (n - 32) if n > 32 else ""]))
    for d in DIGITS + NOT_DIGITS:
        add("x" + d, mix(4, "x." + d, ["x." + d, "x" + d, "x " + d]))
        add("x." + d, mix(4, "x." + d, ["x." + d, "x" + d]))

    # Digits around commas: a digit,digit anywhere deletes every mark.
    for a in DIGITS[:5] + NOT_DIGITS[:3]:
        for b in DIGITS[2:6] + NOT_DIGITS[3:5]:
            add(a + b + "-x", mix(4, a + "," + b + "-x", [a + "," + b + "-x", a + b + "x", a + " " + b + " x"]))
    for p in ["1000", "1 000", "1,000", "a b", "1 2"]:
        add(p, mix(4, "1,000", ["1,000", "1, 000", "a,b", "1 ,2", "1,000,000"]))

    # Unicode whitespace: between words, around answers, and characters that are not spaces.
    for ws in WHITESPACE + NOT_WHITESPACE:
        add("red ball", mix(4, "red" + ws + "ball", ["red" + ws + "ball", ws + "red ball" + ws]))
        add("red" + ws + "ball", ["red" + ws + "ball"] * 10)
        add(ws + "yes" + ws, ["yes"] * 10)

    # Letter case beyond ASCII.
    for p in ["école", "ÉCOLE", "straße", "STRASSE", "οδος", "ΟΔΟΣ", "ὈΔΌΣ", "i̇", "İ"]:
        add(p, mix(4, "ÉCOLE", ["ÉCOLE", "école", "ΟΔΟΣ", "οδος", "İ", "STRASSE"]))

    # Other numbers of human answers.
    for n in [2, 3, 5, 7]:
        answers = [FILLERS[i % 3] for i in range(n)]
        add(FILLERS[0], answers)
        add(FILLERS[1].upper(), answers)
        add("x", ["x"] * n)

    # Random mixtures of everything above.
    tokens = (list(CONTRACTIONS) + list(CONTRACTIONS.values()) + list(NUMBERS) + ARTICLES
              + ["A", "The", "An", "red", "Ball", "lets", "x", "1", "1,000", "2.5", "dog."]
              + DIGITS + NOT_DIGITS + PUNCT + [".", "..", ","])
    seps = [" ", "", "  ", "\t", "\n"] + WHITESPACE[:8] + ["\u3000", "\u200b"]

    def random_answer():
        n = rng.randint(0, 4)
        return "".join(rng.choice(tokens) + rng.choice(seps) for _ in range(n)).rstrip(" ")

    for _ in range(120):
        pool = [random_answer() for _ in range(rng.randint(1, 4))]
        answers = [rng.choice(pool) for _ in range(10)]
        prediction = rng.choice(pool + [random_answer()])
        if rng.random() < 0.5:
            # The same answer written differently: case, spacing, an article.
            prediction = rng.choice([prediction.upper(), " " + prediction + ".", "the " + prediction])
        add(prediction, answers)
    return cases


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cases = build_cases(random.Random(18))
    for case in cases:
        case["accuracy"] = accuracy(case["prediction"], case["answers"])
    overall = sum(c["accuracy"] for c in cases) / len(cases)
    with open(sys.argv[1], "w", encoding="ascii") as f:
        f.write("{\n")
        f.write(f' "generator": "scripts/vqa_reference.py",\n')
        f.write(f' "python": {json.dumps(sys.version.split()[0])},\n')
        f.write(f' "unicode": {json.dumps(unicodedata.unidata_version)},\n')
        f.write(f' "overall": {json.dumps(overall)},\n')
        f.write(' "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=True) for c in cases))
        f.write("\n ]\n}\n")
    print(f"wrote {len(cases)} cases, overall accuracy {overall:.6f}, to {sys.argv[1]}")


if __name__ == "__main__":
    main()
