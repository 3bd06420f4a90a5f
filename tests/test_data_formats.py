"""Prompt formats on hand-made items, against the texts of original_code_facts.md §3 written out by hand."""
import json
import os
import pathlib

import pytest

from configs.data import default as default_config
from t5x_like import io_utils
from t5x_like.data import formats as prompt_formats
from t5x_like.data import pipeline
from t5x_like.data.examples import Example

SYS_FLAN = ("You are a large language model for solving tasks. To solve a task, you print the answer "
            "using the following format: 'Answer Solution: ...'")
SYS_SG = ("You are a large language model for generating examples. To answer a question, you return a "
          "list of samples and use them to answer the question provided. The format of the output is "
          "'Answer Solution: ... END_EXAMPLES'")
INSTRUCTION = ("Premise number 0.\nDoes this next sentence follow, given the preceding text?\n"
               "Hypothesis 0.\n\nyes; no")


def nli(i: int, label: str) -> Example:
    return Example("rte", str(i), (("premise", f"Premise number {i}."), ("hypothesis", f"Hypothesis {i}.")),
                   label, ("yes", "no"))


ITEM = prompt_formats.view(nli(0, "yes"))
EXAMPLES = [prompt_formats.view(nli(5, "no")), prompt_formats.view(nli(7, "no"))]

# §3.2, the [SIM] example, with the second example written out.
SAMPLEGEN_FAITHFUL = (
    "<s>[INST] <<SYS>>\n" + SYS_SG + "\n<</SYS>>\n\n" + INSTRUCTION + "[/INST]\n"
    "\nExample 1:\nPremise 1: Premise number 5.\nHypothesis 1: Hypothesis 5.\nOptions 1: yes; no\nAnswer 1: no\n"
    "\nExample 2:\nPremise 2: Premise number 7.\nHypothesis 2: Hypothesis 7.\nOptions 2: yes; no\nAnswer 2: no\n"
    "\nSolution:\nPremise Solution: Premise number 0.\nHypothesis Solution: Hypothesis 0.\n"
    "Options Solution: yes; no\nAnswer Solution: yes\nEND_EXAMPLES\n</s>"
)
# §3.4, the [SIM] example.
GOLD = (
    "Example 1:\nPremise 1: Premise number 5.\nHypothesis 1: Hypothesis 5.\nOptions 1: yes; no\nAnswer 1: no\n"
    "\nExample 2:\nPremise 2: Premise number 7.\nHypothesis 2: Hypothesis 7.\nOptions 2: yes; no\nAnswer 2: no\n"
    "\nSolution:\nPremise Solution: Premise number 0.\nHypothesis Solution: Hypothesis 0.\n"
    "Options Solution: yes; no\nAnswer Solution:"
)


def test_flan_train_faithful_matches_the_original_text():
    formatted = prompt_formats.flan_train(INSTRUCTION, "yes", faithful=True)
    assert formatted.prompt + formatted.target == (
        "<s>[INST] <<SYS>>\n" + SYS_FLAN + "\n<</SYS>>\n\n" + INSTRUCTION + "[/INST]\nAnswer Solution: yes</s>")


def test_flan_default_has_no_special_token_literals_and_test_prompt_is_train_prompt():
    train = prompt_formats.flan_train(INSTRUCTION, "yes")
    assert train.prompt == "[INST] <<SYS>>\n" + SYS_FLAN + "\n<</SYS>>\n\n" + INSTRUCTION + "[/INST]"
    assert train.target == "\nAnswer Solution: yes"
    assert prompt_formats.flan_test(INSTRUCTION) == prompt_formats.Formatted(train.prompt, "")


def test_samplegen_train_faithful_matches_the_original_text():
    formatted = prompt_formats.samplegen_train(INSTRUCTION, ITEM, EXAMPLES, faithful=True)
    assert formatted.prompt + formatted.target == SAMPLEGEN_FAITHFUL
    assert formatted.target.startswith("\n\nExample 1:")


def test_samplegen_default_drops_only_the_literals():
    formatted = prompt_formats.samplegen_train(INSTRUCTION, ITEM, EXAMPLES)
    assert formatted.prompt + formatted.target == SAMPLEGEN_FAITHFUL[len("<s>"):-len("</s>")]
    assert "<s>" not in formatted.prompt + formatted.target


def test_samplegen_test_prompt_matches_training_prompt_unless_the_original_newline_is_asked_for():
    train_prompt = prompt_formats.samplegen_train(INSTRUCTION, ITEM, EXAMPLES).prompt
    assert prompt_formats.samplegen_test(INSTRUCTION).prompt == train_prompt
    faithful = prompt_formats.samplegen_test(INSTRUCTION, faithful=True, newline_before_close=True).prompt
    assert faithful == "<s>" + train_prompt[: -len("[/INST]")] + "\n[/INST]"
    assert prompt_formats.samplegen_test(INSTRUCTION, faithful=True).prompt == "<s>" + train_prompt


def test_gold_pipeline_matches_the_original_text():
    assert prompt_formats.gold_pipeline(ITEM, EXAMPLES) == prompt_formats.Formatted(GOLD, "")


def test_base_d_is_the_bare_instruction():
    assert prompt_formats.base_d(INSTRUCTION).prompt == INSTRUCTION
    assert prompt_formats.base_d(INSTRUCTION, leading_newline=True).prompt == "\n" + INSTRUCTION
    # the original's "\n[/INST]" deletion also took the instruction's own last newline
    assert prompt_formats.base_d(INSTRUCTION + "\n\n", leading_newline=True).prompt == "\n" + INSTRUCTION + "\n"


def test_faithful_training_and_samplegen_prompts_cut_trailing_newlines_of_the_instruction():
    assert prompt_formats.flan_train(INSTRUCTION + "\n", "yes", faithful=True).prompt.endswith("yes; no[/INST]")
    assert prompt_formats.flan_test(INSTRUCTION + "\n", faithful=True).prompt.endswith("yes; no\n[/INST]")
    assert prompt_formats.samplegen_test(INSTRUCTION + "\n", faithful=True).prompt.endswith("yes; no[/INST]")
    assert prompt_formats.flan_train(INSTRUCTION + "\n", "yes").prompt.endswith("yes; no\n[/INST]")


def test_samplegen_pipeline_input_drops_leading_newlines_and_cuts_after_the_first_answer_solution():
    response = "\n\nExample 1:\nA 1: x\nAnswer 1: no\n\nSolution:\nA Solution: y\nAnswer Solution: yes\nAnswer Solution: no"
    assert prompt_formats.samplegen_pipeline_input(response) == (
        "Example 1:\nA 1: x\nAnswer 1: no\n\nSolution:\nA Solution: y\nAnswer Solution:")
    assert prompt_formats.samplegen_pipeline_input("\nno marker here") == "no marker here"


def test_view_puts_options_last_under_the_tasks_name_or_omits_them():
    item = Example("hellaswag", "1", (("context", "A man"),), "runs", ("runs", "sits"))
    assert prompt_formats.view(item, options_field="endings").fields == (("context", "A man"), ("endings", "runs; sits"))
    assert prompt_formats.view(item, options_field=None).fields == (("context", "A man"),)
    assert prompt_formats.view(item, quoted_options=True).fields[-1] == ("options", '"runs", "sits"')


def test_translation_blocks_have_no_example_numbers():
    pair = prompt_formats.view(Example("wmt16/de-en", "3", (("sent1", "Hallo"),), "Hello"))
    assert prompt_formats.example_block(pair, 2, number_fields=False) == "\nExample 2:\nSent1: Hallo\nAnswer: Hello\n"


def test_unified_field_names():
    text = prompt_formats.samplegen_train(INSTRUCTION, ITEM, EXAMPLES, unified=True).target
    assert "\nExample 2:\nInput 1: Premise number 7.\nInput 2: Hypothesis 7.\nInput 3: yes; no\nAnswer 2: no\n" in text
    assert "\nInput 1 Solution: Premise number 0.\nInput 2 Solution: Hypothesis 0.\nInput 3 Solution: yes; no\n" in text
    assert "Premise 1:" not in text and "Premise Solution" not in text


def test_corrupted_examples_and_solution_fields():
    """original_code_facts.md §3.7: `Example k:\n(blank)\nAnswer k: \n(blank)`, Solution fields "None"."""
    target = prompt_formats.samplegen_train(INSTRUCTION, ITEM, EXAMPLES, corrupted=True).target
    assert target == ("\n\nExample 1:\n(blank)\nAnswer 1: \n(blank)\n\nExample 2:\n(blank)\nAnswer 2: \n(blank)\n\nSolution:\n"
                      "Premise Solution: None\nHypothesis Solution: None\nOptions Solution: None\n"
                      "Answer Solution: yes\nEND_EXAMPLES\n")


def test_no_answer_variant_leaves_the_answer_empty():
    target = prompt_formats.samplegen_train(INSTRUCTION, ITEM, EXAMPLES, show_answer=False).target
    assert target.endswith("\nOptions Solution: yes; no\nAnswer Solution: \nEND_EXAMPLES\n")
    assert "Answer 1: no" in target


def test_gold_pipeline_ablation_numbering():
    prompt = prompt_formats.gold_pipeline(ITEM, EXAMPLES, renumber_fields=False).prompt
    assert "\nExample 2:\nPremise 1: Premise number 7.\nHypothesis 1: Hypothesis 7.\nOptions 1: yes; no\nAnswer 2: no\n" in prompt


def test_bigbench_closed_format_quotes_options_and_cuts_trailing_periods():
    assert prompt_formats.bigbench_instruction("Is it?", ["Yes.", "No"]) == 'Question: Is it?\n"Yes", "No"'
    item = Example("causal_judgment", "0", (("input", "Is it?"),), "Yes.", ("Yes.", "No"))
    gold = prompt_formats.gold_pipeline(prompt_formats.bigbench_view(item), [prompt_formats.bigbench_view(item)]).prompt
    assert gold.endswith('\nSolution:\nQuestion Solution: Is it?\nOptions Solution: "Yes", "No"\nAnswer Solution:')
    assert gold.startswith('Example 1:\nQuestion 1: Is it?\nOptions 1: "Yes", "No"\nAnswer 1: Yes.\n')


def test_bigbench_gold_pipeline_faithful_reproduces_the_originals_artefacts():
    """Hand-derived from add_train_ic (original_code_facts.md §3.4): blank lines collapsed, "Context: "
    deleted, and `Options 1:Options 2:` where both examples show the same options."""
    item = 'Question: Which?\n\n"Yes", "No"'
    examples = [('Question: Context: A story.\n\nDid it?\n"Yes", "No"', "Yes"),
                ('Question: Q: Another.\n"Yes", "No"', "No")]
    assert prompt_formats.bigbench_gold_pipeline_faithful(item, examples).prompt == (
        'Example 1:\nQuestion 1: A story.\nDid it?\nOptions 1:Options 2: "Yes", "No"\nAnswer 1: Yes\n\n'
        'Example 2:\nQuestion 2: Another.\nOptions 1:Options 2: "Yes", "No"\nAnswer 2: No\n\n'
        'Solution:\nQuestion Solution: Which?\nOptions Solution: "Yes", "No"\nAnswer Solution:')
    distinct = [('Question: A?\n"a", "b"', "a"), ('Question: B?\n"c", "d"', "d")]
    unified = prompt_formats.bigbench_gold_pipeline_faithful(item, distinct, unified=True).prompt
    assert unified == ('Example 1:\nInput 1 1: A?\nInput 2 1: "a", "b"\nAnswer 1: a\n\n'
                       'Example 2:\nInput 1 2: B?\nInput 2 2: "c", "d"\nAnswer 2: d\n\n'
                       'Solution:\nInput 1 Solution: Which?\nInput 2 Solution: "Yes", "No"\nAnswer Solution:')


def test_bigbench_ladder_grows_more_ornate_and_keeps_the_content():
    texts = [prompt_formats.bigbench_instruction("Q?", ["a", "b"], f"bad_prompt_{k}") for k in range(1, 7)]
    assert all("Q?" in text and '"a", "b"' in text for text in texts)
    assert [len(text) for text in texts] == sorted(len(text) for text in texts)
    assert len(set(texts)) == 6


def test_adv_style_letters_options():
    text = prompt_formats.bigbench_instruction("Q?", ["first", "second."], "adv")
    assert text.startswith('Q?\n(a) "first", (b) "second"\n') and text.endswith(prompt_formats.ADV_INJECTION)
    assert prompt_formats.letter_options(["x", "y", "z"]) == ("(a) x", "(b) y", "(c) z")


def test_unknown_bigbench_style_raises():
    with pytest.raises(ValueError, match="bad_prompt_7"):
        prompt_formats.bigbench_instruction("Q?", ["a"], "bad_prompt_7")


# --- golden snapshots: real tasks, real templates, every format ------------------------------

SNAPSHOT_DIR = pathlib.Path(__file__).parent / "fixtures" / "prompts"
SNAPSHOT_TASKS = "rte,copa,sst2,cb,squad,causal_judgment"
UPDATE = os.environ.get("UPDATE_PROMPT_SNAPSHOTS") == "1"


def snapshot_text(row: dict) -> str:
    """A human-readable rendering of one prepared row, exact in prompt and target."""
    examples = ", ".join(f"{task}:{id_}" for task, id_ in zip(row["ic_tasks"], row["ic_ids"]))
    return (f"task: {row['task']}\nformat: {row['format']}\nsplit: {row['split']}\nid: {row['id']}\n"
            f"template_id: {row['template_id']}\nin-context: {examples}\nlabel: {row['label']}\n"
            f"options: {json.dumps(row['options'], ensure_ascii=False)}\n"
            f"===== prompt =====\n{row['prompt']}\n===== target =====\n{row['target']}\n===== end =====\n")


def snapshots(data_dir: pathlib.Path, out: pathlib.Path, faithful: bool) -> dict[str, str]:
    """The first row of every (format, task, split) file of a small preparation, keyed by file name."""
    config = default_config.get_config()
    config.update(dict(data_dir=str(data_dir), tasks=SNAPSHOT_TASKS, num_test=3, carve_example_pool=True,
                       train_size_limit=40, faithful=faithful))
    config.formats = "flan,samplegen,gold_pipeline,base_d" if faithful else ",".join(pipeline.FORMATS)
    manifest = pipeline.prepare(config, out)
    prefix = "faithful/" if faithful else ""
    return {
        f"{prefix}{relative.removesuffix('.jsonl').replace('/', '.')}.txt":
            snapshot_text(io_utils.read_jsonl(str(out / relative))[0])
        for relative in manifest["files"] if not relative.startswith("mixtures/")
    }


@pytest.mark.parametrize("faithful", [False, True], ids=["default", "faithful"])
def test_golden_prompt_snapshots(data_dir, tmp_path, faithful):
    current = snapshots(data_dir, tmp_path, faithful)
    folder = SNAPSHOT_DIR / ("faithful" if faithful else "")
    if UPDATE:
        for name, text in current.items():
            (SNAPSHOT_DIR / name).parent.mkdir(parents=True, exist_ok=True)
            (SNAPSHOT_DIR / name).write_text(text, encoding="utf-8")
    stored = {f"{'faithful/' if faithful else ''}{p.name}": p.read_text(encoding="utf-8")
              for p in folder.glob("*.txt")}
    assert sorted(stored) == sorted(current), "set UPDATE_PROMPT_SNAPSHOTS=1 after reviewing the change"
    for name, text in current.items():
        assert stored[name] == text, name
