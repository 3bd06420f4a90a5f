"""Task metrics against their reference implementations and hand-computed values."""
import math
import random
import statistics

import editdistance
import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from scipy import stats

from t5x_like.metrics import METRICS, compute_metric, normalize_squad, normalize_triviaqa, parse_score, primary_score

# --- SQuAD / TriviaQA normalisation -------------------------------------------------------------

SQUAD_NORMALISATION = [  # (input, official SQuAD normalize_answer output), worked by hand
    ("The Eiffel Tower", "eiffel tower"),
    ("  an   apple a day ", "apple day"),
    ("Denver Broncos!", "denver broncos"),
    ("U.S.A.", "usa"),
    ("rock-and-roll", "rockandroll"),
    ("It's the end.", "its end"),
    ("A", ""),
    ("theater", "theater"),  # articles only as whole words
    ("Anthem of the Seas", "anthem of seas"),
    ("$1,000.50", "100050"),
    ("\"quoted\"\tanswer\n", "quoted answer"),
    ("Saint-Étienne", "saintétienne"),  # only ASCII punctuation is removed
    ("‘curly’", "‘curly’"),
    ("", ""),
]


@pytest.mark.parametrize("text,expected", SQUAD_NORMALISATION)
def test_squad_normalisation(text, expected):
    assert normalize_squad(text) == expected


TRIVIAQA_NORMALISATION = [  # (input, official TriviaQA normalize_answer output)
    ("The Eiffel Tower", "eiffel tower"),
    ("U.S.A.", "u s"),  # punctuation -> space, then the article "a" is dropped
    ("rock-and-roll", "rock and roll"),
    ("new_york", "new york"),
    ("‘curly’", "curly"),
    ("It's", "it s"),
]


@pytest.mark.parametrize("text,expected", TRIVIAQA_NORMALISATION)
def test_triviaqa_normalisation(text, expected):
    assert normalize_triviaqa(text) == expected


# --- EM / F1 -------------------------------------------------------------------------------------

def test_squad_em_f1_uses_all_references():
    predictions = ["Denver Broncos", "the broncos", "Carolina", ""]
    references = [("Denver Broncos", "Broncos"), ("Denver Broncos", "Broncos"), ("Carolina Panthers",), ("Panthers",)]
    # item F1s: 1; max(2*(1/1*1/2)/(1.5)=2/3, 1) = 1; 2*(1*1/2)/1.5 = 2/3; 0.  EMs: 1, 1, 0, 0.
    result = compute_metric("squad_em_f1", predictions, references)
    assert result["em"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3 + 0) / 4)
    single = compute_metric("squad_em_f1", predictions, [refs[0] for refs in references])
    assert single["em"] == pytest.approx(25.0)  # "the broncos" only matches the second alias


def test_triviaqa_em_f1():
    result = compute_metric("triviaqa_em_f1", ["new_york city", "Paris"], [("New York City", "NYC"), ("London",)])
    assert result == {"em": pytest.approx(50.0), "f1": pytest.approx(50.0)}


# --- accuracy -----------------------------------------------------------------------------------

def test_accuracy_counts_unmatched_as_wrong():
    result = compute_metric("accuracy", ["yes", None, "no", "Yes"], ["yes", "no", "no", "yes"])
    assert result == {"accuracy": 50.0}  # exact, case-sensitive: matching normalises, not accuracy


# --- Matthews correlation -----------------------------------------------------------------------

def test_mcc_binary_hand_computed_and_phi():
    # confusion (true rows, pred cols) acceptable/unacceptable: TP=6, FN=2, FP=1, TN=3
    truth = ["acceptable"] * 8 + ["unacceptable"] * 4
    pred = ["acceptable"] * 6 + ["unacceptable"] * 2 + ["acceptable"] * 1 + ["unacceptable"] * 3
    tp, fn, fp, tn = 6, 2, 1, 3
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    result = compute_metric("matthews_corr", pred, truth)["matthews_corr"]
    assert result == pytest.approx(100 * expected)
    phi = stats.pearsonr([t == "acceptable" for t in truth], [p == "acceptable" for p in pred]).statistic
    assert result == pytest.approx(100 * phi)


def test_mcc_multiclass_hand_computed_with_unmatched():
    truth = ["a", "a", "a", "b", "b", "c", "c", "c"]
    pred = ["a", "a", "b", "b", None, "c", "a", "c"]
    # classes a, b, c, <unmatched>: t = (3, 2, 3, 0), p = (3, 2, 2, 1), correct = 5, n = 8
    cov = 5 * 8 - (3 * 3 + 2 * 2 + 3 * 2 + 0 * 1)
    expected = cov / math.sqrt((64 - (9 + 4 + 4 + 1)) * (64 - (9 + 4 + 9)))
    assert compute_metric("matthews_corr", pred, truth)["matthews_corr"] == pytest.approx(100 * expected)


def test_mcc_constant_predictions_is_zero():
    assert compute_metric("matthews_corr", ["acceptable"] * 4, ["acceptable", "unacceptable"] * 2) == {"matthews_corr": 0.0}


# --- Pearson / Spearman (STS-B) -----------------------------------------------------------------

def test_pearson_spearman_equal_scipy():
    rng = random.Random(0)
    gold = [round(rng.uniform(0, 5), 1) for _ in range(40)]
    preds = [f"{min(5.0, max(0.0, g + rng.gauss(0, 1))):.1f}" for g in gold]
    result = compute_metric("pearson_spearman", preds, [str(g) for g in gold])
    values = [float(p) for p in preds]
    assert result["pearson"] == pytest.approx(100 * stats.pearsonr(values, gold).statistic)
    assert result["spearman"] == pytest.approx(100 * stats.spearmanr(values, gold).statistic)
    assert result["num_unparsed"] == 0


@pytest.mark.parametrize("text,fixed,faithful", [
    ("3.8", 3.8, 3.8),
    (" 4 ", 4.0, 4.0),
    ("I would say 2.5 out of 5", 2.5, 9.0),
    ("7", 5.0, 7.0),  # fixed: clipped to the STS-B scale
    ("similar", None, 9.0),
    (None, None, 9.0),
])
def test_parse_score(text, fixed, faithful):
    assert parse_score(text) == fixed
    assert parse_score(text, faithful=True) == faithful


def test_pearson_spearman_unparsed_uses_midpoint_or_faithful_nine():
    preds, gold = ["1", "4", "n/a", "5"], ["1", "4", "3", "5"]
    fixed = compute_metric("pearson_spearman", preds, gold)
    assert fixed["num_unparsed"] == 1
    assert fixed["pearson"] == pytest.approx(100 * stats.pearsonr([1, 4, 2.5, 5], [1, 4, 3, 5]).statistic)
    faithful = compute_metric("pearson_spearman", preds, gold, faithful=True)
    assert faithful["pearson"] == pytest.approx(100 * stats.pearsonr([1, 4, 9, 5], [1, 4, 3, 5]).statistic)


def test_pearson_spearman_constant_predictions_are_nan_and_primary_50():
    result = compute_metric("pearson_spearman", ["3"] * 4, ["1", "2", "3", "4"])
    assert math.isnan(result["pearson"]) and math.isnan(result["spearman"])
    assert primary_score("pearson_spearman", result) == 50.0


# --- ROUGE --------------------------------------------------------------------------------------

SUMMARIES = [
    ("Amanda baked cookies and will bring Jerry some tomorrow.", "Amanda will bring Jerry cookies tomorrow."),
    ("The government announced new tax cuts for small firms.", "New tax cuts for small businesses were announced."),
    ("Police arrested two men after the robbery.", "Two men were arrested by police following a bank robbery."),
    ("", "A storm hit the coast overnight."),
    # sentence order swapped: summary-level LCS (Lsum) credits both sentences, flat LCS only one
    ("Investors were worried about rates . Stocks fell sharply .", "Stocks fell sharply.\nInvestors were worried about rates."),
]


def test_rouge_equals_rouge_score():
    predictions = [p for p, _ in SUMMARIES]
    references = [r for _, r in SUMMARIES]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=False)
    prepare = lambda text: text.replace(" . ", " .\n")  # noqa: E731 (T5's Lsum sentence split)
    expected = {key: 100 * np.mean([scorer.score(prepare(r), prepare(p))[key].fmeasure for p, r in SUMMARIES])
                for key in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    result = compute_metric("rouge", predictions, references)
    assert result == pytest.approx(expected)
    assert result["rougeLsum"] != pytest.approx(result["rougeL"])  # the multi-sentence item differs


def test_rouge1_hand_computed_and_multi_reference():
    # "the cat sat" vs "a cat sat down": 2 common unigrams, P = 2/3, R = 2/4 -> F = 4/7
    assert compute_metric("rouge", ["the cat sat"], ["a cat sat down"])["rouge1"] == pytest.approx(400 / 7)
    multi = compute_metric("rouge", ["the cat sat"], [("a dog ran", "the cat sat")])
    assert multi["rouge1"] == pytest.approx(100.0)


# --- BLEU ---------------------------------------------------------------------------------------

TRANSLATIONS = [
    ("The cat sat on the mat.", "The cat sat on a mat."),
    ("He reads a book every evening.", "Every evening he reads a book."),
    ("The weather is nice today.", "Today the weather is beautiful."),
    ("I do not know.", "I don't know."),
]


def test_bleu_equals_sacrebleu_and_hand_value():
    hyps = [h for h, _ in TRANSLATIONS]
    refs = [r for _, r in TRANSLATIONS]
    reference = sacrebleu.metrics.BLEU(tokenize="intl", smooth_method="exp").corpus_score(hyps, [refs])
    assert compute_metric("bleu", hyps, refs)["bleu"] == pytest.approx(reference.score)
    # precisions 5/6, 3/5, 2/4, 1/3 and equal lengths: BLEU = geometric mean
    hand = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert compute_metric("bleu", ["the cat sat on the mat"], ["the cat sat on a mat"])["bleu"] == pytest.approx(hand)


def test_bleu_multi_reference_streams():
    hyps = [h for h, _ in TRANSLATIONS]
    refs = [(r, h.upper()) for h, r in TRANSLATIONS]
    reference = sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs], [r[1] for r in refs]], tokenize="intl", smooth_method="exp")
    assert compute_metric("bleu", hyps, refs)["bleu"] == pytest.approx(reference.score)
    with pytest.raises(ValueError, match="same number of references"):
        compute_metric("bleu", hyps[:2], [refs[0], refs[1][:1]])


# --- edit distance ------------------------------------------------------------------------------

def test_edit_distance():
    preds = ["Hello, how are you?", "i am fine thanks", ""]
    refs = ["Hello, how are you?", "I am fine, thanks.", "ok then"]
    distances = [editdistance.eval(p.split(), r.split()) for p, r in zip(preds, refs)]
    assert distances == [0, 3, 2]  # i/I, fine/fine, thanks/thanks. substituted; two insertions
    result = compute_metric("edit_distance", preds, refs)
    assert result["edit_distance_mean"] == pytest.approx(statistics.mean(distances))
    assert result["edit_distance_median"] == 2 and result["edit_distance_max"] == 3 and result["edit_distance_sum"] == 5
    assert result["edit_similarity"] == pytest.approx(100 * (1 - 5 / (4 + 4 + 2)))
    assert primary_score("edit_distance", result) == pytest.approx(50.0)


# --- corpus level, not batch level --------------------------------------------------------------

def _batched_mean(name, predictions, references, batch_size):
    """The original's wrong aggregation: the metric per batch, averaged over batches."""
    values = [compute_metric(name, predictions[i:i + batch_size], references[i:i + batch_size])
              for i in range(0, len(predictions), batch_size)]
    return {key: float(np.mean([v[key] for v in values])) for key in values[0]}


def test_corpus_level_not_batch_averaged():
    hyps = [h for h, _ in TRANSLATIONS] * 3
    refs = [r for _, r in TRANSLATIONS] * 3
    corpus = compute_metric("bleu", hyps, refs)["bleu"]
    assert corpus == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="intl", smooth_method="exp").score)
    assert abs(corpus - _batched_mean("bleu", hyps, refs, 5)["bleu"]) > 1.0

    truth = ["acceptable"] * 6 + ["unacceptable"] * 4
    pred = ["acceptable", "acceptable", "unacceptable", "acceptable", "acceptable",
            "acceptable", "unacceptable", "unacceptable", "acceptable", "unacceptable"]
    corpus_mcc = compute_metric("matthews_corr", pred, truth)["matthews_corr"]
    phi = stats.pearsonr([t == "acceptable" for t in truth], [p == "acceptable" for p in pred]).statistic
    assert corpus_mcc == pytest.approx(100 * phi)
    assert abs(corpus_mcc - _batched_mean("matthews_corr", pred, truth, 5)["matthews_corr"]) > 1.0


@pytest.mark.parametrize("name,predictions,references", [
    ("bleu", [h for h, _ in TRANSLATIONS], [r for _, r in TRANSLATIONS]),
    ("rouge", [p for p, _ in SUMMARIES], [r for _, r in SUMMARIES]),
    ("matthews_corr", ["a", "b", "a", "a", "b", None], ["a", "b", "b", "a", "b", "a"]),
    ("pearson_spearman", ["1", "2", "4", "3", "5"], ["1", "3", "4", "2", "5"]),
])
def test_corpus_metrics_do_not_depend_on_item_order(name, predictions, references):
    """A per-batch aggregation would change when items move between batches; ours must not."""
    order = list(range(len(predictions)))
    random.Random(1).shuffle(order)
    shuffled = compute_metric(name, [predictions[i] for i in order], [references[i] for i in order])
    assert shuffled == pytest.approx(compute_metric(name, predictions, references))


# --- dispatch and primary score -----------------------------------------------------------------

def test_registry_names():
    assert set(METRICS) == {"accuracy", "matthews_corr", "pearson_spearman", "squad_em_f1",
                            "triviaqa_em_f1", "rouge", "bleu", "edit_distance"}


@pytest.mark.parametrize("name,metrics,expected", [
    ("accuracy", {"accuracy": 72.5}, 72.5),
    ("matthews_corr", {"matthews_corr": 0.0}, 50.0),
    ("matthews_corr", {"matthews_corr": 100.0}, 100.0),
    ("matthews_corr", {"matthews_corr": -40.0}, 30.0),
    ("pearson_spearman", {"pearson": 80.0, "spearman": 60.0, "num_unparsed": 0.0}, 85.0),
    ("squad_em_f1", {"em": 40.0, "f1": 55.0}, 55.0),
    ("triviaqa_em_f1", {"em": 40.0, "f1": 45.0}, 45.0),
    ("rouge", {"rouge1": 40.0, "rouge2": 20.0, "rougeL": 35.0, "rougeLsum": 36.0}, 35.0),
    ("bleu", {"bleu": 27.3}, 27.3),
])
def test_primary_score(name, metrics, expected):
    assert primary_score(name, metrics) == pytest.approx(expected)


def test_dispatch_errors_are_actionable():
    with pytest.raises(ValueError, match="unknown metric 'f1'.*accuracy"):
        compute_metric("f1", ["a"], ["a"])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute_metric("accuracy", ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no items"):
        compute_metric("rouge", [], [])
    with pytest.raises(ValueError, match="exactly one reference"):
        compute_metric("matthews_corr", ["a"], [("a", "b")])


@pytest.mark.parametrize("name,reference", [("squad_em_f1", "Denver"), ("triviaqa_em_f1", "Denver"),
                                            ("rouge", "Denver won"), ("bleu", "Denver won the game"),
                                            ("edit_distance", "Denver won")])
def test_missing_prediction_scores_as_empty_text(name, reference):
    assert compute_metric(name, [None, "Denver"], [reference] * 2) == compute_metric(name, ["", "Denver"], [reference] * 2)
