"""Option matching: rule order, normalisation, token-F1 argmax, empty answers, scorer plugin."""
import difflib
import json

import pytest

from t5x_like.metrics import Match, match_option
from t5x_like.metrics.bertscore import BertScoreScorer, PluginUnavailable, bertscore_unavailable_reason

NLI = ("yes", "it is not possible to tell", "no")


@pytest.mark.parametrize("answer,options,expected", [
    ("yes", NLI, Match("yes", 0, "exact")),
    ("no", NLI, Match("no", 2, "exact")),
    ("Yes", NLI, Match("yes", 0, "casefold")),  # case
    ("yes.", NLI, Match("yes", 0, "casefold")),  # sentence punctuation
    ("  It is not possible to tell!  ", NLI, Match("it is not possible to tell", 1, "casefold")),
    ('"True"', ("True", "False"), Match("True", 0, "casefold")),  # BIG-bench quoted options
    ("the World", ("World", "Sports", "Business", "Sci/Tech"), Match("World", 0, "normalized")),  # article
    ("scitech", ("World", "Sports", "Business", "Sci/Tech"), Match("Sci/Tech", 3, "normalized")),
    ("$18", ("12", "18", "24"), Match("18", 1, "normalized")),  # gsm8k currency
    ("not possible", NLI, Match("it is not possible to tell", 1, "token_f1")),  # partial overlap
    ("The answer is no", NLI, Match("no", 2, "token_f1")),
    ("He went to the store to buy milk",
     ("He went to the store to buy milk.", "She stayed home."), Match("He went to the store to buy milk.", 0, "casefold")),
    ("he bought milk at the store",
     ("He went to the store to buy milk.", "She stayed home."), Match("He went to the store to buy milk.", 0, "token_f1")),
])
def test_match_rules(answer, options, expected):
    assert match_option(answer, options) == expected


@pytest.mark.parametrize("answer,expected", [
    ("a", Match("A", 0, "casefold")),
    ("the A", Match("A", 0, "token_f1")),  # an article-only text keeps its articles
    ("(b)", Match("B", 1, "normalized")),
    ("The answer is C", Match("C", 2, "token_f1")),
    ("...", Match(None, None, "no_match")),  # punctuation only never matches
])
def test_letter_options(answer, expected):
    assert match_option(answer, ("A", "B", "C", "D")) == expected


def test_exact_beats_normalized_duplicate():
    # "No" and "no" normalise equally; the exact rule must win for the second.
    assert match_option("no", ("No", "no")) == Match("no", 1, "exact")
    assert match_option("NO", ("No", "no")) == Match(None, None, "ambiguous")


@pytest.mark.parametrize("answer,options,expected", [  # real ARC option sets
    ("+1.", ("-1", "+1", "-2", "+2"), Match("+1", 1, "casefold")),
    ("1", ("-1", "+1", "-2", "+2"), Match(None, None, "no_match")),  # signs are kept
    ("12.5", ("125 years", "12.5 years"), Match("12.5 years", 1, "token_f1")),  # decimal point kept
    ("$1,000", ("100", "1000", "10"), Match("1000", 1, "normalized")),
    ("125 years.", ("12.5 years", "125 years", "125,000 years"), Match("125 years", 1, "casefold")),
    ("Mass of -3", ("mass of +3.", "mass of -3.", "charge of +3."), Match("mass of -3.", 1, "casefold")),
    ("10°C.", ("-10°C", "-1°C", "0°C", "10°C"), Match("10°C", 3, "casefold")),
    ("10°c", ("-10°C", "-1°C", "10 °C"), Match(None, None, "no_match")),
])
def test_options_that_differ_only_in_punctuation(answer, options, expected):
    assert match_option(answer, options) == expected


def test_duplicate_options_count_once():
    options = ("lay in bed", "lay in bed", "go to bed")  # a real commonsense_qa item
    assert match_option("Lay in bed", options) == Match("lay in bed", 0, "casefold")
    assert match_option("in bed", options) == Match("lay in bed", 0, "token_f1")


@pytest.mark.parametrize("answer", ["", "   ", "\n"])
def test_empty_answer_is_wrong_unless_faithful(answer):
    assert match_option(answer, NLI) == Match(None, None, "empty")
    assert match_option(answer, NLI, faithful=True) == Match("yes", 0, "faithful_empty")


def test_unrelated_answer_matches_nothing():
    assert match_option("purple elephant", NLI) == Match(None, None, "no_match")
    assert match_option("...", NLI) == Match(None, None, "no_match")  # normalises to ""


def test_token_f1_tie_is_ambiguous():
    assert match_option("yes or no", ("yes", "no")) == Match(None, None, "ambiguous")


class CharRatio:
    """A real (non-neural) similarity plugin: difflib's character match ratio."""

    name = "char_ratio"

    def __init__(self):
        self.calls = 0

    def __call__(self, answer, options):
        self.calls += 1
        return [difflib.SequenceMatcher(None, answer, option).ratio() for option in options]


def test_scorer_decides_only_after_rules_fail():
    scorer = CharRatio()
    assert match_option("yes", NLI, scorer=scorer) == Match("yes", 0, "exact")
    assert match_option("not possible", NLI, scorer=scorer).rule == "token_f1"
    assert scorer.calls == 0
    assert match_option("yess", ("yes", "no"), scorer=scorer) == Match("yes", 0, "char_ratio")
    assert match_option("yes or no", ("yes", "no"), scorer=scorer).rule == "char_ratio"
    assert scorer.calls == 2
    assert match_option("", ("yes", "no"), scorer=scorer) == Match(None, None, "empty")


def test_no_options_is_an_error():
    with pytest.raises(ValueError, match="no options"):
        match_option("yes", ())


def test_bertscore_plugin_reports_unavailable(tmp_path):
    reason = bertscore_unavailable_reason(tmp_path)
    assert reason is not None and "BERTScore plugin unavailable" in reason
    with pytest.raises(PluginUnavailable, match="BERTScore plugin unavailable"):
        BertScoreScorer(tmp_path)


@pytest.mark.parametrize("task,split", [("arc_challenge", "test"), ("arc_easy", "test"),
                                        ("commonsense_qa", "validation"), ("openbookqa", "test")])
def test_real_option_sets_round_trip(data_dir, task, split):
    """Every option of real multiple-choice items, re-cased / quoted / punctuated, maps back to itself."""
    with open(data_dir / task / f"{split}.jsonl") as handle:
        items = [json.loads(line) for line in handle][:300]
    for item in items:
        options = item["choices"]["text"]
        for option in options:
            for variant in (option.upper(), f"{option}.", f'"{option}"', f"  {option.lower()}!"):
                assert match_option(variant, options).option == option, (variant, options)
