"""Mixture setups (checked against the registry's clusters and drop list) and examples-proportional mixing."""
import pytest

from t5x_like.data import mixtures
from t5x_like.data import tasks as registry

NLG_CLUSTERS = ("struct_to_text_nlg", "translation_nlg", "summarization_nlg")


def cluster_tasks(*, drop: tuple[str, ...] = (), keep_only: tuple[str, ...] = ()) -> set[str]:
    """Tasks of the clusters kept by the rule, minus the always-dropped list (the original's recipe)."""
    clusters = keep_only or tuple(c for c in registry.CLUSTERS if c not in drop)
    return {t for c in clusters for t in registry.CLUSTERS[c]} - set(registry.ALWAYS_DROPPED_FROM_MIXTURES)


def test_setups_follow_the_stated_rules():
    setups = {name: set(tasks) for name, tasks in mixtures.SETUPS.items()}
    assert setups["default"] == cluster_tasks(drop=("misc", "summarization_nlg"))
    assert setups["default"] == set(registry.DEFAULT_MIXTURE)
    assert setups["setup1"] == cluster_tasks(keep_only=NLG_CLUSTERS)
    assert setups["setup2"] == cluster_tasks(drop=("nli", *NLG_CLUSTERS))
    assert setups["setup3"] == {"qnli"}
    assert setups["setup4"] == {"mnli"}
    assert setups["setup5"] == cluster_tasks(drop=("coreference",))
    assert setups["setup6"] == cluster_tasks(drop=("coreference",)) | {"winogrande"}
    assert setups["setup7"] == cluster_tasks(drop=("coreference",)) | {"dpr_raw"}


def test_setup_sizes_and_names():
    sizes = {name: len(mixtures.mixture_tasks(name)) for name in mixtures.SETUPS}
    assert sizes == {"default": 36, "setup1": 18, "setup2": 23, "setup3": 1, "setup4": 1,
                     "setup5": 48, "setup6": 49, "setup7": 49}
    for tasks in mixtures.SETUPS.values():
        assert len(set(tasks)) == len(tasks)
        for name in tasks:
            registry.get_task(name)  # raises for an unknown name
    with pytest.raises(ValueError, match="setup8"):
        mixtures.mixture_tasks("setup8")


def test_is_seen():
    assert mixtures.is_seen("mnli_matched", "default") and mixtures.is_seen("mnli_mismatched", "setup4")
    assert not mixtures.is_seen("mnli_matched", "setup1")
    assert mixtures.is_seen("bool_q", "default") and not mixtures.is_seen("bool_q", "setup1")
    assert mixtures.is_seen("opin_movie", "setup1") and not mixtures.is_seen("opin_movie", "default")
    assert mixtures.is_seen("qnli", "setup3") and not mixtures.is_seen("qnli", "setup5")
    assert mixtures.is_seen("winogrande", "setup6") and not mixtures.is_seen("winogrande", "setup7")
    assert not any(mixtures.is_seen("squad", setup) for setup in mixtures.SETUPS)
    seen_default = {t for t in registry.TEST_TASKS if mixtures.is_seen(t, "default")}
    assert seen_default == {"bool_q", "snli", "copa", "common_gen", "wmt16/de-en", "dpr_raw",
                            "mnli_matched", "mnli_mismatched"}


def test_rates_are_examples_proportional_with_cap():
    rates = mixtures.mixing_rates({"a": 10000, "b": 500, "c": 3000})
    # hand-computed: min(n, 3000) = 3000, 500, 3000 over 6500
    assert rates == pytest.approx({"a": 3000 / 6500, "b": 500 / 6500, "c": 3000 / 6500})
    assert rates["a"] == pytest.approx(0.461538461538)


def test_allocate_uses_largest_remainder_with_name_ties():
    assert mixtures.allocate({"a": 0.5, "b": 0.25, "c": 0.25}, 3) == {"a": 1, "b": 1, "c": 1}
    assert mixtures.allocate({"a": 0.5, "b": 0.25, "c": 0.25}, 2) == {"a": 1, "b": 1, "c": 0}
    assert sum(mixtures.allocate({"x": 0.3, "y": 0.3, "z": 0.4}, 1001).values()) == 1001


def rows(task: str, n: int) -> list[str]:
    return [f"{task}-{i}" for i in range(n)]


def test_build_mixture_counts_validation_and_size_limit():
    data = {"big": rows("big", 50), "mid": rows("mid", 8), "small": rows("small", 3)}
    mix = mixtures.build_mixture(data, seed=1, cap=10, size_limit=40, validation_fraction=0.1)
    assert mix.sizes == {"big": 40, "mid": 8, "small": 3}
    assert mix.counts == {"big": 10, "mid": 8, "small": 3}  # min(n, cap) each
    assert mix.rates == pytest.approx({"big": 10 / 21, "mid": 8 / 21, "small": 3 / 21})
    everything = mix.train + mix.validation
    assert len(mix.validation) == 2 and len(everything) == 21  # round(0.1 * 21)
    assert sorted(everything) == sorted(rows("big", 10) + rows("mid", 8) + rows("small", 3))


def test_build_mixture_is_seeded():
    data = {"a": rows("a", 30), "b": rows("b", 30)}
    first = mixtures.build_mixture(data, seed=3)
    assert first == mixtures.build_mixture(data, seed=3)
    other = mixtures.build_mixture(data, seed=4)
    assert other.train != first.train
    assert sorted(other.train + other.validation) == sorted(first.train + first.validation)


def test_build_mixture_with_explicit_size_cycles_small_tasks():
    mix = mixtures.build_mixture({"a": rows("a", 2), "b": rows("b", 6)}, seed=0, size=16, cap=3000,
                                 validation_fraction=0.0)
    assert mix.counts == {"a": 4, "b": 12}  # rates 2/8 and 6/8 of 16
    assert sorted(r for r in mix.train if r.startswith("a")) == ["a-0", "a-0", "a-1", "a-1"]


def test_build_mixture_rejects_empty_tasks():
    with pytest.raises(ValueError, match="empty_task"):
        mixtures.build_mixture({"a": rows("a", 2), "empty_task": []}, seed=0)
