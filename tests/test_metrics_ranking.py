"""Log-likelihood ranking: lm-eval acc / acc_norm, hand-computed."""
import pytest

from t5x_like.metrics import Ranking, rank_options, ranking_accuracy


def test_acc_and_acc_norm_can_disagree():
    # acc: -5 > -6 -> "no"; acc_norm: -5/2 = -2.5 < -6/9 = -0.67 -> "maybe not"
    assert rank_options([-5.0, -6.0], ["no", "maybe not"]) == Ranking(acc_index=0, acc_norm_index=1)


def test_length_is_characters_of_the_option_text():
    # -4/4 ("True") = -1.0 vs -4.5/5 ("False") = -0.9: acc_norm prefers "False", acc "True"
    assert rank_options([-4.0, -4.5], ["True", "False"]) == Ranking(0, 1)


def test_ties_go_to_lowest_index():
    assert rank_options([-2.0, -1.0, -1.0], ["a", "b", "c"]) == Ranking(1, 1)
    assert rank_options([-3.0, -3.0], ["yes", "yes"]) == Ranking(0, 0)


def test_ranking_accuracy_corpus():
    logliks = [[-1.0, -2.0], [-5.0, -6.0], [-3.0, -1.0, -2.0]]
    options = [["yes", "no"], ["no", "maybe not"], ["World", "Sports", "Business"]]
    gold = [0, 1, 2]
    # acc picks 0, 0, 1 -> 1/3 correct; acc_norm picks 0 (-0.33 vs -1), 1, 1 (-0.2) -> 2/3 correct
    assert ranking_accuracy(logliks, options, gold) == pytest.approx({"acc": 100 / 3, "acc_norm": 200 / 3})


def test_errors():
    with pytest.raises(ValueError, match="2 log-likelihoods for 3 options"):
        rank_options([-1.0, -2.0], ["a", "b", "c"])
    with pytest.raises(ValueError, match="empty string"):
        rank_options([-1.0, -2.0], ["", "b"])
    with pytest.raises(ValueError, match="gold indices"):
        ranking_accuracy([[-1.0]], [["a"]], [])
