"""Answer extraction from generated responses: the paper's rules (original `test.eval`).

Tuned models (FLAN-D, SampleGen-D) are trained to write `Answer Solution: <answer>`; base models
(Base-D, Gold / SampleGen Pipeline) continue a prompt and their answer is their first line.
"""
from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Literal

ANSWER_MARKER = "Answer Solution:"
EOS_TEXT = "</s>"
END_EXAMPLES = "END_EXAMPLES"
BASE_PREFIX = "Answer:"
Mode = Literal["tuned", "base"]

_TUNED_STRIP = string.whitespace + "*"
# A letter answer in adv mode: "(b)", "(b) text", "B.", "b)", "B:", or a lone letter "B".
_LETTER_ANSWER = re.compile(r"\(\s*([A-Za-z])\s*\)|([A-Za-z])[.):](?=\s|$)|([A-Za-z])$")


def extract_answer(
    response: str,
    mode: Mode,
    *,
    lettered_options: Sequence[str] | None = None,
    marker: str = ANSWER_MARKER,
) -> str:
    """The answer string in `response` under the paper's rules for `mode` ("" when none is found).

    `lettered_options`: the options of an adv-format prompt, shown as "(a) ...", "(b) ..."; a
    letter answer is then mapped back to its option text. `marker`: the answer marker (the
    Gaelic prompts use "Fuasgladh Freagairt:").
    """
    if mode == "tuned":
        answer = _extract_tuned(response, marker)
    elif mode == "base":
        answer = _extract_base(response, marker)
    else:
        raise ValueError(f"extract_answer: mode must be 'tuned' or 'base', got {mode!r}")
    if lettered_options is not None:
        answer = map_letter_answer(answer, lettered_options)
    return answer


def _extract_tuned(response: str, marker: str) -> str:
    """Rest of the line after the first marker, in the text before a literal `</s>`.

    Without a marker, a response holding a literal `</s>` answers with the text on the line
    immediately before it (the original FLAN-D rule); otherwise the answer is "".
    """
    head, eos, _ = response.partition(EOS_TEXT)
    start = head.find(marker)
    if start >= 0:
        answer = head[start + len(marker):].split("\n", 1)[0]
    elif eos:
        answer = head.rsplit("\n", 1)[-1]
    else:
        return ""
    return _strip_tuned(answer, marker)


def _strip_tuned(answer: str, marker: str) -> str:
    """Strip whitespace, `*` (markdown bold), repeated leading markers and a trailing END_EXAMPLES.

    The original kept an `END_EXAMPLES` written on the answer line; it is never part of an answer.
    """
    answer = answer.strip(_TUNED_STRIP)
    while answer.startswith(marker):
        answer = answer[len(marker):].strip(_TUNED_STRIP)
    if answer.endswith(END_EXAMPLES):
        answer = answer[:-len(END_EXAMPLES)].strip(_TUNED_STRIP)
    return answer


def _extract_base(response: str, marker: str) -> str:
    """First non-empty line; the text after its first `marker` / `Answer:` if it has one."""
    line = next((line.strip() for line in response.splitlines() if line.strip()), "")
    prefix = re.search(f"{re.escape(marker)}|{re.escape(BASE_PREFIX)}", line)
    return line[prefix.end():].strip() if prefix else line


def map_letter_answer(answer: str, options: Sequence[str]) -> str:
    """Map an adv-mode letter answer ("(b)", "B.", "b) text", "B") to the text of that option.

    An answer that already is an option, has no leading letter, or names a letter beyond the
    options is returned unchanged.
    """
    if answer in options:
        return answer
    found = _LETTER_ANSWER.match(answer.strip())
    if found is None:
        return answer
    letter = next(group for group in found.groups() if group)
    index = ord(letter.lower()) - ord("a")
    return options[index] if index < len(options) else answer
