"""The prompt-facing record every task source is normalised into."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Example:
    """One labelled item of a task, independent of where it was loaded from.

    `fields` keeps the source's column order (the SampleGen format shows them in that order);
    options are not among the fields: formats append them themselves.
    """

    task: str
    id: str  # stable source id (the source's own idx/id, or its row number in the split)
    fields: tuple[tuple[str, str], ...]  # (field name, text) shown in prompts, in order
    label: str  # gold answer string, one of `options` for classification tasks
    options: tuple[str, ...] = ()  # answer options; empty for generative tasks
    references: tuple[str, ...] = ()  # every gold answer, for multi-reference metrics (SQuAD)
    raw_options: tuple[str, ...] = ()  # the options as the source spells them, where parsing changed them

    def field(self, name: str) -> str:
        """The text of field `name` (KeyError naming the task when absent)."""
        for key, value in self.fields:
            if key == name:
                return value
        raise KeyError(f"task {self.task!r} example {self.id!r} has no field {name!r}")
