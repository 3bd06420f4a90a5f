"""Instruction templates: coverage, rendering, the seeded draw and external template files
(JSON, and the authors' own flan_orig.py checked against their module imported as Python)."""
import hashlib
import importlib.util
import json
import re

import pytest

from conftest import shared_path
from t5x_like.data import formats, sources, tasks, templates
from t5x_like.data.examples import Example

LEFTOVER = re.compile(r"\{[A-Za-z_]+\}")


def _sample_example(task: tasks.Task, data_dir) -> Example:
    """A real example where the bundle has the task, else one built from the task's field list."""
    try:
        return sources.load_examples(task, "eval", data_dir=str(data_dir))[0]
    except sources.TaskDataNotFoundError:
        fields = tuple((name, f"<{name} text>") for name in task.fields)
        options = () if task.generative else ("first option", "second option")
        return Example(task.name, "synthetic-0", fields, "first option" if options else "<target>",
                       options)


def test_every_task_has_five_templates_that_render(data_dir):
    for task in tasks.all_tasks():
        task_templates = templates.templates_for(task)
        assert len(task_templates) >= 5, task.name
        assert len({t.instruction for t in task_templates}) == len(task_templates), task.name
        example = _sample_example(task, data_dir)
        for template in task_templates:
            text = templates.render(template, example)
            assert not LEFTOVER.search(text), (template.id, text)
            if not task.generative:
                assert text.count("; ".join(example.options)) >= 1
                assert "OPTIONS" not in text
            if template.target_field not in (None, "label"):
                # the target side of a translation pair is never shown
                assert example.field(template.target_field) not in text


def test_render_hand_checked(data_dir):
    example = sources.load_examples("rte", "eval", data_dir=str(data_dir))[0]
    template = templates.Template("t/0", "{premise}\nQ: {hypothesis}\n\n{options}")
    assert templates.render(template, example) == (
        "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, "
        "according to the Christopher Reeve Foundation.\nQ: Christopher Reeve had an accident.\n\n"
        "yes; no")
    missing = templates.Template("t/1", "{sentence1} {options}")
    with pytest.raises(KeyError, match=r"needs \{sentence1\}.*'rte'"):
        templates.render(missing, example)


def test_translation_directions():
    row = {"translation": {"ro": "Bună ziua.", "en": "Good day."}}
    example = tasks.get_task("wmt16/ro-en").to_example(row, 0)
    targets = {t.target_field for t in templates.templates_for("wmt16/ro-en")}
    assert targets == {"sent1", "sent2"}
    for template in templates.templates_for("wmt16/ro-en"):
        text = templates.render(template, example)
        shown, hidden = (("Bună ziua.", "Good day.") if template.target_field == "sent2"
                         else ("Good day.", "Bună ziua."))
        assert shown in text and hidden not in text
        assert "Romanian" in text or "English" in text


def test_draw_is_a_function_of_seed_task_and_id():
    ids = [str(i) for i in range(300)]
    draws = [templates.draw_template("cola", i, 0).id for i in ids]
    assert draws == [templates.draw_template("cola", i, 0).id for i in ids]
    assert set(draws) == {f"cola/{k}" for k in range(5)}
    other_seed = [templates.draw_template("cola", i, 1).id for i in ids]
    assert other_seed != draws
    # the documented formula, recomputed independently
    for i in ids[:20]:
        digest = hashlib.sha256(f"0:cola:{i}".encode()).digest()
        assert draws[int(i)] == f"cola/{int.from_bytes(digest[:8], 'big') % 5}"


def _write(tmp_path, payload) -> str:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(payload))
    return str(path)


def test_external_template_file(tmp_path):
    path = _write(tmp_path, {"templates": {
        "mnli": [{"instruction": "P: {premise} H: {hypothesis} -> {options}"}],
        "mnli_matched": [{"instruction": "{premise} / {hypothesis} ({options})"}],
        "wmt16": [{"instruction": "{sent1} into {lang2}", "target_field": "sent2"}]}})
    loaded = templates.load_template_file(path)
    assert [t.id for t in loaded["mnli"]] == ["mine:mnli/0"]
    assert [t.id for t in loaded["mnli_mismatched"]] == ["mine:mnli/0"]
    assert [t.id for t in loaded["mnli_matched"]] == ["mine:mnli_matched/0"]  # task key overrides
    assert len(loaded["wmt16/fi-en"]) == 1
    drawn = templates.draw_template("mnli", "x", 3, template_set=loaded)
    assert drawn.instruction.startswith("P: ")


@pytest.mark.parametrize("payload,message", [
    ({"templates": {"mnlii": [{"instruction": "{premise} {options}"}]}},
     r"unknown task or template group 'mnlii' \(did you mean mnli"),
    ({"templates": {"rte": [{"instruction": "{premise} {hypotesis} {options}"}]}},
     r"mine:rte/0 for task 'rte': unknown placeholder \{hypotesis\} \(usable: premise, hypothesis, options\)"),
    ({"templates": {"rte": [{"instruction": "{premise} {hypothesis}"}]}},
     r"need an \{options\} slot"),
    ({"templates": {"xsum": [{"instruction": "{text} {options}", "target_field": "label"}]}},
     r"unknown placeholder \{options\}"),
    ({"templates": {"wmt16": [{"instruction": "{sent1}", "target_field": "sent1"}]}},
     r"unknown placeholder \{sent1\}"),
    ({"nothing": 1}, r"expected a JSON object with a 'templates' object"),
])
def test_external_template_file_errors(tmp_path, payload, message):
    with pytest.raises(templates.TemplateError, match=message):
        templates.load_template_file(_write(tmp_path, payload))


def test_optional_field_renders_empty_where_the_source_lacks_it():
    loaded = templates.parse_template_set(
        {"templates": {"openbookqa": [{"instruction": "Fact: {fact}\n{question_stem}\n{options}"}]}}, "t")
    without = Example("openbookqa", "1", (("question_stem", "Q?"),), "a", ("a", "b"))
    with_fact = Example("openbookqa", "2", (("question_stem", "Q?"), ("fact", "F.")), "a", ("a", "b"))
    assert templates.render(loaded["openbookqa"][0], without) == "Fact: \nQ?\na; b"
    assert templates.render(loaded["openbookqa"][0], with_fact) == "Fact: F.\nQ?\na; b"


# --- the authors' flan_orig.py ------------------------------------------------------------------

def _authors_patterns() -> dict:
    """PATTERNS of the authors' file, by importing it as Python (the independent reading)."""
    path = shared_path("reference", "ukplab", "prompts", "flan_orig.py")
    spec = importlib.util.spec_from_file_location("authors_flan_orig", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PATTERNS


def test_authors_file_gives_every_templated_task_its_first_five_as_the_original_used_them():
    path = shared_path("reference", "ukplab", "prompts", "flan_orig.py")
    patterns = _authors_patterns()
    loaded = templates.load_template_file(path)
    for task in tasks.all_tasks():
        if tasks.is_bigbench_style(task.name):
            assert task.name not in loaded
            continue
        key = task.name if task.name in patterns else task.template_group
        expected = [(text.replace('"', "").replace("{options_}", "{options}"), target.strip("{}"))
                    for text, target in patterns[key][:5]]
        got = loaded[task.name]
        assert [t.instruction for t in got] == [text for text, _ in expected], task.name
        assert [t.id for t in got] == [f"flan_orig:{key}/{k}" for k in range(5)]
        for template, (_, target) in zip(got, expected):
            if not task.generative:
                assert template.target_field is None
            elif task.target_fields:
                assert template.target_field == target  # translation direction: sent1 / sent2
            else:
                assert template.target_field == "label"


def test_authors_template_renders_like_their_str_format(data_dir):
    """Filled by us and by their own mechanism (str.format with options_) on a real RTE row."""
    patterns = _authors_patterns()
    loaded = templates.load_template_file(shared_path("reference", "ukplab", "prompts", "flan_orig.py"))
    example = sources.load_examples("rte", "eval", data_dir=str(data_dir))[0]
    for k, template in enumerate(loaded["rte"]):
        theirs = patterns["rte"][k][0].replace('"', "").format(
            **dict(example.fields), options_="; ".join(example.options))
        assert templates.render(template, example) == theirs


def _patterns_file(tmp_path, body: str):
    path = tmp_path / "flan_orig.py"
    path.write_text(body)
    return path


def test_authors_file_is_parsed_never_executed(tmp_path):
    marker = tmp_path / "executed"
    body = (f"open({str(marker)!r}, 'w').close()\n"
            + "PATTERNS = " + repr({t.template_group: [("{text} {options_}" if not t.generative else "{x}", "{answer}")]
                                    for t in tasks.all_tasks()}) + "\n")
    with pytest.raises(templates.TemplateError):
        templates.load_template_file(_patterns_file(tmp_path, body))
    assert not marker.exists()


def _rte_only(text: str, n: int = 5) -> str:
    return "PATTERNS = " + repr({"rte": [(text, "{answer}")] * n})


@pytest.mark.parametrize("body,message", [
    (_rte_only("{premise} {hypotesis} {options_}"),
     r"flan_orig:rte/0 for task 'rte': unknown placeholder \{hypotesis\} \(usable: premise, hypothesis, options\)"),
    (_rte_only("{premise} {hypothesis} {options_}"), r"task 'cb' has 0 templates \(needs the first 5 of key 'cb'\)"),
    (_rte_only("{premise} {hypothesis} {options_}", n=3), r"task 'rte' has 3 templates"),
    ("PATTERNS = dict(rte=[])", r"PATTERNS is not a plain literal"),
    ("TEMPLATES = {}", r"no `PATTERNS = \{...\}` literal"),
    ("PATTERNS = {", r"cannot read template file"),
])
def test_authors_file_errors_are_one_line_naming_task_and_placeholder(tmp_path, body, message):
    with pytest.raises(templates.TemplateError, match=message) as error:
        templates.load_template_file(_patterns_file(tmp_path, body))
    assert "\n" not in str(error.value)


def test_authors_bigbench_styles_fill_like_their_str_format():
    path = shared_path("reference", "ukplab", "prompts", "templates.json")
    theirs = json.loads(path.read_text())
    wordings = templates.load_bigbench_wordings(path)
    options = ["Yes.", "No"]
    quoted, lettered = '"Yes", "No"', '(a) "Yes", (b) "No"'
    assert formats.bigbench_instruction("Is it?", options, "closed", wordings) == theirs["bigbench-closed"].format(
        question="Is it?", options=quoted)
    for k in range(1, 7):  # their test.py strips the ladder's question: .rstrip(" ").rstrip("\n")
        for question, stripped in (("Is it? ", "Is it?"), ("Is it? \n", "Is it? ")):
            assert formats.bigbench_instruction(question, options, f"bad_prompt_{k}", wordings) == (
                theirs[f"bigbench-bad-prompt-{k}"].format(question=stripped, options=quoted))
    assert formats.bigbench_instruction("Is it?", options, "adv", wordings) == theirs["bigbench-adv"].format(
        question="Is it?", numbered_options=lettered)


def test_bigbench_styles_file_errors_name_the_key(tmp_path):
    path = tmp_path / "templates.json"
    path.write_text(json.dumps({"bigbench-closed": "{question} {choices}"}))
    with pytest.raises(templates.TemplateError, match=r"bigbench-closed: placeholders.*\['choices', 'question'\].*"
                                                      r"no string 'bigbench-bad-prompt-1'") as error:
        templates.load_bigbench_wordings(path)
    assert "\n" not in str(error.value)
