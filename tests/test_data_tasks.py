"""Task registry: the original's task lists, answer spaces, fixes and the faithful switch."""
import json

import pytest

from t5x_like.data import tasks

# Independent references typed from original_code_facts.md §2.1-§2.4.
DEFAULT_MIXTURE_36 = {
    "anli_r1", "anli_r2", "anli_r3", "rte", "cb", "snli", "mnli", "wnli", "copa", "hellaswag", "piqa",
    "imdb_reviews", "sentiment140", "sst2", "mrpc", "qqp", "paws_wiki", "arc", "arc_easy", "bool_q",
    "drop", "multirc", "openbookqa", "cosmos_qa", "dpr_raw", "common_gen", "e2e_nlg", "web_nlg",
    "para_crawl/ende", "para_crawl/enes", "para_crawl/enfr", "wmt16/cs-en", "wmt16/de-en",
    "wmt16/fi-en", "wmt16/ru-en", "wmt16/tr-en"}
HELD_OUT_29 = {
    "qnli", "story_cloze", "yelp_polarity_reviews", "stsb", "trivia_qa_full", "trivia_qa_wiki",
    "squad", "squad_v2", "record", "wsc273", "winogrande", "dart", "wmt16/ro-en", "coqa", "quac",
    "trec", "cola", "wic", "math_dataset", "fix_punct", "aeslc", "ag_news", "cnn_dailymail",
    "gigaword", "samsum", "xsum", "opin_idebate", "opin_movie", "newsroom"}
SEEN_8 = {"bool_q", "snli", "copa", "common_gen", "wmt16/de-en", "dpr_raw", "mnli_matched",
          "mnli_mismatched"}


def test_task_lists_match_the_original():
    assert len(tasks.FLAN_TASKS) == len(set(tasks.FLAN_TASKS)) == 65
    assert sum(len(v) for v in tasks.CLUSTERS.values()) == 64  # + newsroom, in no cluster
    assert len(tasks.CLUSTERS) == 12
    assert sorted(c for c, cat in tasks.CATEGORY_OF_CLUSTER.items() if cat == "NLG") == [
        "struct_to_text_nlg", "summarization_nlg", "translation_nlg"]
    assert len(tasks.TEST_TASKS) == len(set(tasks.TEST_TASKS)) == 37
    assert len(tasks.BIGBENCH_TEST_TASKS) == 8 and len(tasks.ALWAYS_DROPPED_FROM_MIXTURES) == 15
    names = set(tasks.all_task_names())
    assert set(tasks.FLAN_TASKS) | set(tasks.TEST_TASKS) | set(tasks.BIGBENCH_TEST_TASKS) | {
        "gsm8k"} == names
    assert len(names) == 76


def test_clusters_and_categories_of_registered_tasks():
    for cluster, names in tasks.CLUSTERS.items():
        for name in names:
            task = tasks.get_task(name)
            assert task.cluster == cluster
            # ag_news sits in the summarization cluster but is a classification task
            assert task.category == tasks.CATEGORY_OF_CLUSTER[cluster] or name == "ag_news"
    assert tasks.get_task("newsroom").cluster is None


def test_default_mixture_and_seen_held_out_split():
    assert set(tasks.DEFAULT_MIXTURE) == DEFAULT_MIXTURE_36 and len(tasks.DEFAULT_MIXTURE) == 36
    seen = {t for t in tasks.TEST_TASKS if tasks.is_seen_in(t, tasks.DEFAULT_MIXTURE)}
    assert seen == SEEN_8
    assert set(tasks.TEST_TASKS) - seen == HELD_OUT_29


@pytest.mark.parametrize("name,metric", [
    ("cola", "matthews_corr"), ("stsb", "pearson_spearman"), ("squad", "squad_em_f1"),
    ("record", "squad_em_f1"), ("trivia_qa_wiki", "triviaqa_em_f1"), ("wmt16/ro-en", "bleu"),
    ("fix_punct", "edit_distance"), ("xsum", "rouge"), ("common_gen", "rouge"), ("snli", "accuracy"),
    ("gsm8k", "accuracy"), ("logical_deduction", "accuracy")])
def test_metric_per_task(name, metric):
    assert tasks.get_task(name).metric == metric


def test_every_task_is_well_formed():
    for task in tasks.all_tasks():
        assert task.metric in tasks.METRICS
        assert task.category in ("NLU", "NLG")
        assert task.source.eval_split or task.source.train_split, task.name
        assert len(set(task.fields)) == len(task.fields) and task.fields, task.name
        assert set(task.target_fields) <= set(task.fields)
        assert task.options_field is None or not task.generative


def test_unknown_task_names_closest_matches():
    with pytest.raises(ValueError, match=r"unknown task 'wmt16/deen'.*wmt16/de-en"):
        tasks.get_task("wmt16/deen")
    task = tasks.get_task("rte")
    assert tasks.get_task(task) is task


def _first_row(data_dir, rel):
    with open(data_dir / rel, encoding="utf-8") as f:
        return json.loads(f.readline())


def test_wic_label_mapping_on_a_real_row(data_dir):
    row = _first_row(data_dir, "wic/validation.jsonl")
    # "An emerging professional class." vs "... showed real class.": different senses, label 0
    assert row["word"] == "class" and row["label"] == 0
    wic = tasks.get_task("wic")
    fixed, faithful = wic.to_example(row, 0), wic.to_example(row, 0, faithful=True)
    assert fixed.label == "False" and faithful.label == "True"
    assert fixed.options == faithful.options == ("True", "False")
    assert fixed.fields == (("word", "class"), ("sentence1", row["sentence1"]),
                            ("sentence2", row["sentence2"]))
    assert fixed.id == "0"


def test_unlabelled_rows_dropped_or_faithfully_last_option(data_dir):
    for name, rel, last in (("cola", "cola/validation.jsonl", "acceptable"),
                            ("wic", "wic/validation.jsonl", "False"),
                            ("rte", "rte/validation.jsonl", "no")):
        row = dict(_first_row(data_dir, rel), label=-1)
        task = tasks.get_task(name)
        assert task.to_example(row, 0) is None
        assert task.to_example(row, 0, faithful=True).label == last
    copa_row = dict(_first_row(data_dir, "copa/validation.jsonl"), label=-1)
    assert tasks.get_task("copa").to_example(copa_row, 0, faithful=True).label == copa_row["choice2"]
    snli_row = dict(_first_row(data_dir, "snli/validation.jsonl"), label=-1)
    assert tasks.get_task("snli").to_example(snli_row, 0) is None


def test_faithful_eval_splits_of_unlabelled_tests():
    for name in ("cola", "wic", "copa"):
        source = tasks.get_task(name).source
        assert source.split_name("eval") == "validation"
        assert source.split_name("eval", faithful=True) == "test"
    assert tasks.get_task("mnli_matched").source.local_stem("eval") == "validation_matched"
    assert tasks.get_task("anli_r2").source.split_name("eval") == "test_r2"
    assert tasks.get_task("anli_r2").source.local_stem("eval") == "test"


@pytest.mark.parametrize("score,fixed,faithful", [(2.5, "3", "2"), (4.8, "5", "4"), (0.0, "0", "0"),
                                                  (3.2, "3", "3"), (1.5, "2", "1")])
def test_stsb_rounding(data_dir, score, fixed, faithful):
    row = dict(_first_row(data_dir, "stsb/train.jsonl"), label=score)
    task = tasks.get_task("stsb")
    assert task.to_example(row, 0).label == fixed
    assert task.to_example(row, 0, faithful=True).label == faithful
    assert task.to_example(row, 0).references == (f"{score:g}",)


def test_no_answer_leak_in_summaries_unless_faithful():
    movie = {"_movie_name": "M", "_critics": {"a": "Great.", "b": "Bad."}, "_critic_consensus": "Mixed."}
    task = tasks.get_task("opin_movie")
    fixed, faithful = task.to_example(movie, 0), task.to_example(movie, 0, faithful=True)
    assert fixed.fields == (("movie", "M"), ("numbered_reviews", "0)Great. 1)Bad."),
                            ("first_review", "Great."))
    assert ("critic_consensus", "Mixed.") in faithful.fields and fixed.label == "Mixed."
    news = {"title": "T", "text": "Body.", "summary": "S."}
    fixed = tasks.get_task("newsroom").to_example(news, 0)
    assert fixed.fields == (("title", "T"), ("text", "Body.")) and fixed.label == "S."
    assert tasks.get_task("newsroom").to_example(news, 0, faithful=True).fields[-1] == ("summary", "S.")
    debate = {"_claim": "C", "_argument_sentences": {"0": "x , y .", "1": "z"}, "_debate_name": "D"}
    ex = tasks.get_task("opin_idebate").to_example(debate, 0)
    assert ex.fields == (("argument_sentences", "x, y. z"), ("debate_name", "D")) and ex.label == "C"


def test_translation_example_carries_both_sides():
    row = {"translation": {"de": "Guten Morgen.", "en": "Good morning."}}
    ex = tasks.get_task("wmt16/de-en").to_example(row, 7)
    assert ex.fields == (("lang1", "German"), ("lang2", "English"), ("sent1", "Guten Morgen."),
                         ("sent2", "Good morning.")) and ex.label == "Good morning." and ex.id == "7"
    ex = tasks.get_task("para_crawl/enfr").to_example({"translation": {"en": "Yes.", "fr": "Oui."}}, 0)
    assert ex.field("lang1") == "English" and ex.label == "Oui."


def test_hub_schema_rows_of_tasks_without_local_data():
    wino = {"sentence": "The cup didn't fit in the bag because _ was big.", "option1": "cup",
            "option2": "bag", "answer": "1"}
    ex = tasks.get_task("winogrande").to_example(wino, 0)
    assert ex.label == "cup" and ex.options == ("cup", "bag") and ex.field("context") == wino["sentence"]
    assert tasks.get_task("winogrande").to_example(dict(wino, answer=""), 0) is None
    record = {"passage": "P", "query": "@placeholder won the match in Paris.",
              "entities": ["Federer", "Nadal", "Federer"], "answers": ["Nadal"], "idx": {"p": 1, "q": 2}}
    ex = tasks.get_task("record").to_example(record, 0)
    assert ex.options == ("Federer won the match in Paris.", "Nadal won the match in Paris.")
    assert ex.label == "Nadal won the match in Paris." and ex.id == "1-2"
    squad2 = {"id": "q1", "title": "T", "context": "C", "question": "Q?",
              "answers": {"text": [], "answer_start": []}}
    assert tasks.get_task("squad_v2").to_example(squad2, 0).label == "unanswerable"
    wsc = {"text": "The trophy doesn't fit into the suitcase because it is too large.",
           "pronoun": "it", "quote": "it is too large", "options": ["the trophy", "the suitcase"],
           "label": 0}
    ex = tasks.get_task("wsc273").to_example(wsc, 0)
    assert ex.options == ("the trophy is too large", "the suitcase is too large")
    assert ex.label == "the trophy is too large"
    assert tasks.get_task("wsc273").to_example(wsc, 0, faithful=True).label == "the trophy"
    trivia = {"question": "Q?", "question_id": "tq1",
              "answer": {"normalized_value": "paris", "normalized_aliases": ["paris", "paris france"]}}
    ex = tasks.get_task("trivia_qa_full").to_example(trivia, 0)
    assert ex.references == ("paris", "paris france") and ex.id == "tq1"
    assert tasks.get_task("trivia_qa_full").to_example(trivia, 0, faithful=True).references == ("paris",)


def test_gsm8k_options_from_the_worked_solution():
    row = {"question": "Janet's ducks lay 16 eggs per day. She eats three and bakes with four. "
                       "She sells the rest for $2 each. How much does she make?",
           "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
                     "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"}
    task = tasks.get_task("gsm8k")
    ex = task.to_example(row, 0)
    assert ex.label == "18" and "18" in ex.options
    assert len(ex.options) == len(set(ex.options)) == 4
    assert set(ex.options) - {"18"} <= {"16", "3", "4", "9", "2"}
    assert task.to_example(row, 5).options == ex.options  # seeded by the question, not the position


def test_arc_choice_with_a_semicolon_split_only_in_faithful_mode(data_dir):
    row = next(r for r in map(json.loads, (data_dir / "arc_challenge" / "test.jsonl").open())
               if r["id"] == "MSA_2012_5_23")  # answer C: "Coal is nonrenewable; water is renewable."
    fixed = tasks.get_task("arc").to_example(row, 0)
    assert fixed.options == tuple(row["choices"]["text"]) and fixed.label == row["choices"]["text"][2]
    faithful = tasks.get_task("arc").to_example(row, 0, faithful=True)
    # the original's "; ".join(choices).split(";"), stripped: six pieces, and the label is piece 2
    assert faithful.options == ("Both are renewable.", "Both are nonrenewable.", "Coal is nonrenewable",
                                "water is renewable.", "Coal is renewable", "water is nonrenewable.")
    assert faithful.label == "Coal is nonrenewable"


def test_openbookqa_shows_the_question_stem_then_the_fact():
    row = {"id": "7", "question_stem": "Plants need", "fact1": "plants need light",
           "choices": {"text": ["light", "noise"], "label": ["A", "B"]}, "answerKey": "A"}
    example = tasks.get_task("openbookqa").to_example(row, 0)
    assert example.fields == (("question_stem", '"Plants need"'), ("fact", "plants need light"))
    del row["fact1"]  # the hub's `main` config (the local bundle) has no fact
    assert tasks.get_task("openbookqa").to_example(row, 0).fields == (("question_stem", '"Plants need"'),)


def test_bigbench_questions_get_the_originals_deletions_and_default_cleaning():
    row = {"inputs": "Context: Ben said, \"Yes\".\nQ: Is it true? ", "targets": ["no"],
           "multiple_choice_targets": ["yes", "no"], "idx": 0}
    stories = tasks.get_task("strange_stories")
    # the original deleted every "Q: " of strange_stories / social_iqa and kept the rest as it was
    assert stories.to_example(row, 0, faithful=True).fields == (("question", 'Context: Ben said, "Yes".\nIs it true? '),)
    assert stories.to_example(row, 0).fields == (("question", 'Context: Ben said, "Yes".\nIs it true?'),)
    causal = dict(row, inputs="How would a typical person answer?\n\nQ: Did A: cause it?\nOptions: - Yes")
    assert tasks.get_task("causal_judgment").to_example(causal, 0, faithful=True).fields == (
        ("question", "How would a typical person answer?\n\nQ: Did cause it?\n- Yes"),)
