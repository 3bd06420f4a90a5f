"""Instruction templates: coverage, rendering, the seeded draw and external template files."""
import hashlib
import json
import re

import pytest

from t5x_like.data import sources, tasks, templates
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
    ({"templates": {"openbookqa": [{"instruction": "{fact} {question_stem} {options}"}]}},
     r"unknown placeholder \{fact\}"),
    ({"nothing": 1}, r"expected a JSON object with a 'templates' object"),
])
def test_external_template_file_errors(tmp_path, payload, message):
    with pytest.raises(templates.TemplateError, match=message):
        templates.load_template_file(_write(tmp_path, payload))
