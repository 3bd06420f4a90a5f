"""Answer extraction on realistic responses (original_code_facts.md §5.2 rules and edge cases)."""
import pytest

from t5x_like.metrics import extract_answer, map_letter_answer

SAMPLEGEN = """
Example 1:
Premise 1: A man is playing a guitar on stage.
Hypothesis 1: A man is performing music.
Options 1: yes; it is not possible to tell; no
Answer 1: yes

Example 2:
Premise 2: Two dogs run through a field.
Hypothesis 2: The dogs are sleeping.
Options 2: yes; it is not possible to tell; no
Answer 2: no

Solution:
Premise Solution: A woman is reading a book in a park.
Hypothesis Solution: A woman is outdoors.
Options Solution: yes; it is not possible to tell; no
Answer Solution: yes
END_EXAMPLES
"""

TUNED_CASES = [
    # (id, response, expected answer)
    ("samplegen_full", SAMPLEGEN, "yes"),
    ("samplegen_no_end_marker", SAMPLEGEN.replace("END_EXAMPLES\n", ""), "yes"),
    ("samplegen_example_answers_ignored",
     "Example 1:\nQuestion 1: Who wrote Hamlet?\nAnswer 1: Shakespeare\n\nExample 2:\n"
     "Question 2: Capital of France?\nAnswer 2: Paris\n\nSolution:\nQuestion Solution: "
     "Who painted the Mona Lisa?\nAnswer Solution: Leonardo da Vinci\nEND_EXAMPLES", "Leonardo da Vinci"),
    ("no_answer_solution",
     "Example 1:\nSentence 1: The movie was great.\nAnswer 1: positive\n\nExample 2:\n"
     "Sentence 2: I hated it.\nAnswer 2: negative\n", ""),
    ("truncated_before_solution", "Example 1:\nPremise 1: A child", ""),
    ("empty_response", "", ""),
    ("multiple_answer_solution_first_wins",
     "Solution:\nAnswer Solution: no\nEND_EXAMPLES\n\nSolution:\nAnswer Solution: yes\nEND_EXAMPLES", "no"),
    ("markdown_bold_marker", "**Solution:**\n**Answer Solution:** yes\nEND_EXAMPLES", "yes"),
    ("markdown_bold_answer", "Answer Solution: **it is not possible to tell**", "it is not possible to tell"),
    ("repeated_marker", "Answer Solution: Answer Solution: positive", "positive"),
    ("flan_direct_plain", "\nAnswer Solution: True", "True"),
    ("flan_direct_literal_eos", "Answer Solution: Sci/Tech</s>", "Sci/Tech"),
    ("flan_eos_without_marker", "The answer is\nnegative</s>", "negative"),
    ("text_after_eos_ignored", "positive</s>\nAnswer Solution: negative", "positive"),
    ("answer_on_next_line_is_lost", "Answer Solution:\nyes", ""),
    ("trailing_spaces_and_cr", "Answer Solution:   acceptable  \r\nEND_EXAMPLES", "acceptable"),
    ("sentence_answer_keeps_punctuation",
     "Solution:\nDialogue Solution: A: hi B: hello\nAnswer Solution: Amanda will call Tom back.\nEND_EXAMPLES",
     "Amanda will call Tom back."),
    ("case_sensitive_marker", "answer solution: yes", ""),
    ("end_examples_on_answer_line", "Answer Solution: no END_EXAMPLES\n</s>", "no"),
    ("only_end_examples", "Answer Solution: END_EXAMPLES", ""),
]


@pytest.mark.parametrize("response,expected", [c[1:] for c in TUNED_CASES], ids=[c[0] for c in TUNED_CASES])
def test_tuned_extraction(response, expected):
    assert extract_answer(response, "tuned") == expected


BASE_CASES = [
    ("gold_pipeline_continuation", " yes\n\nExample 3:\nPremise 3: A dog barks.\nAnswer 3: no", "yes"),
    ("leading_blank_lines", "\n\n   \nno\nExample 3:", "no"),
    ("answer_prefix", "Answer: yes\nThe premise says ...", "yes"),
    ("answer_solution_prefix", "Answer Solution: it is not possible to tell\n", "it is not possible to tell"),
    ("prefix_mid_line", "I think the Answer: False", "False"),
    ("earliest_prefix_wins_rest_of_line", "Answer: yes. Answer Solution: no", "yes. Answer Solution: no"),
    ("base_d_verbose", "The hypothesis follows from the premise, so yes.\nMore text", "The hypothesis follows from the premise, so yes."),
    ("first_line_only", "negative\npositive", "negative"),
    ("empty_and_whitespace", " \n\t\n", ""),
    ("base_keeps_asterisks", "**yes**", "**yes**"),
    ("base_ignores_later_marker", "Sure!\nAnswer Solution: yes", "Sure!"),
    ("samplegen_pipeline_continuation", " 3\nEND_EXAMPLES", "3"),
]


@pytest.mark.parametrize("response,expected", [c[1:] for c in BASE_CASES], ids=[c[0] for c in BASE_CASES])
def test_base_extraction(response, expected):
    assert extract_answer(response, "base") == expected


ADV_OPTIONS = ("The cat", "The dog", "The bird")


@pytest.mark.parametrize("response,mode,expected", [
    ("Answer Solution: (b)", "tuned", "The dog"),
    ("Answer Solution: (B) The dog", "tuned", "The dog"),
    ("Answer Solution: B.", "tuned", "The dog"),
    ("c)", "base", "The bird"),
    ("A", "base", "The cat"),
    ("Answer Solution: The bird", "tuned", "The bird"),
    ("Answer Solution: None", "tuned", "None"),
    ("Answer Solution: (e)", "tuned", "(e)"),  # beyond the options: unchanged, later unmatched
    ("a dog", "base", "a dog"),  # a word, not a letter answer
])
def test_adv_letter_answers(response, mode, expected):
    assert extract_answer(response, mode, lettered_options=ADV_OPTIONS) == expected


def test_letters_are_not_mapped_without_options():
    assert extract_answer("Answer Solution: (b)", "tuned") == "(b)"
    assert map_letter_answer("(b)", ("x",)) == "(b)"


def test_gaelic_marker():
    response = "Eisimpleir 1:\nFreagairt 1: tha\n\nFuasgladh Freagairt: chan eil\n"
    assert extract_answer(response, "tuned", marker="Fuasgladh Freagairt:") == "chan eil"
    assert extract_answer(response, "tuned") == ""


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="mode must be"):
        extract_answer("yes", "flan")
