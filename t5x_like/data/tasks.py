"""Task registry: every task of the paper, its source, and how a source row becomes an `Example`.

One frozen `Task` per task name. A task knows where its data lives (Hugging Face hub id/config/splits,
optionally a TFDS name, and the directory + split files under a local `data_dir` holding the hub's
own schema), how one raw row becomes an `Example` (prompt fields in the column order the SampleGen
format shows them, the gold answer string, the option list), its metric and whether it is
generative. Label strings and option lists follow the authors' code (`original_code_facts.md` §2.2).

Fixes relative to the authors' code are the default; `faithful=True` reproduces the original where
it changes numbers. Every fix is listed in `FIXES` (and in docs/tasks.md).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from t5x_like.data.examples import Example

NLU, NLG = "NLU", "NLG"
METRICS = frozenset({"accuracy", "matthews_corr", "pearson_spearman", "squad_em_f1",
                     "triviaqa_em_f1", "rouge", "bleu", "edit_distance"})
# Source columns that identify a row: the first one present (and not null) is the example id.
ID_COLUMNS = ("idx", "id", "uid", "ind", "question_id", "dialogue_id", "InputStoryid")


class Parsed(NamedTuple):
    """What a task's row parser returns: an `Example` without task name and id."""

    fields: tuple[tuple[str, str], ...]
    label: str
    options: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    raw_options: tuple[str, ...] = ()


Row = Mapping[str, Any]
Parser = Callable[[Row, bool], "Parsed | None"]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a task's rows come from, and under which split names.

    `train_split`/`eval_split` are the hub split names behind the loader's "train"/"eval" (None: the
    source has no such split). Local files are `<data_dir>/<local_dir>/<stem>.jsonl|parquet`, the
    stem being `local_train`/`local_eval` when given, else the hub split name. `faithful_eval_split`
    is the split the authors evaluated on where the default differs (e.g. unlabelled GLUE test).
    `columns` are the source columns the row parser reads (checked against local files in tests).
    """

    hub_id: str | None
    hub_config: str | None
    train_split: str | None
    eval_split: str | None
    local_dir: str
    columns: tuple[str, ...]
    local_train: str | None = None
    local_eval: str | None = None
    optional_columns: tuple[str, ...] = ()
    faithful_eval_split: str | None = None
    tfds_name: str | None = None
    # "hf": rows in the hub schema; "bigbench_json": BIG-bench task.json files under data_dir/bigbench.
    local_format: str = "hf"
    bigbench_files: tuple[str, ...] = ()  # task.json paths relative to <data_dir>/bigbench

    def split_name(self, kind: str, faithful: bool = False) -> str | None:
        """The hub split name behind the loader's `kind` ("train" or "eval")."""
        if kind == "train":
            return self.train_split
        if kind == "eval":
            return (self.faithful_eval_split or self.eval_split) if faithful else self.eval_split
        raise ValueError(f"split must be 'train' or 'eval', got {kind!r}")

    def local_stem(self, kind: str, faithful: bool = False) -> str | None:
        """The local file name (without extension) behind the loader's `kind`."""
        if kind == "train":
            return self.local_train or self.train_split
        if faithful and self.faithful_eval_split:
            return self.faithful_eval_split
        return self.local_eval or self.eval_split


@dataclasses.dataclass(frozen=True)
class Task:
    """One task: identity, source, row conversion, answer space and metric.

    `fields` are the names of an `Example`'s fields, in the column order of the authors' SampleGen
    format (default mode; faithful mode adds the answer column of opin_*/newsroom). `label_name`
    names the source's answer column. Translation examples carry both sides as fields and the
    default target as label; a template may target another field (`target_fields`).
    `options_field` is the name the original SampleGen block gives the options line (None where
    the original shows no options line); `solution_options_field` the name of the options line the
    original's Solution blocks showed all the same (copa). `quoted_fields` are wrapped in double
    quotes, as the original did each time it formatted a row (its Solution blocks formatted the
    item twice and so showed them quoted twice).
    """

    name: str
    cluster: str | None  # FLAN cluster; None for newsroom, BIG-bench and GSM8K
    category: str
    source: Source
    parser: Parser = dataclasses.field(repr=False, compare=False)
    metric: str
    generative: bool
    fields: tuple[str, ...]
    label_name: str = "label"
    options_field: str | None = "options"
    solution_options_field: str | None = None
    quoted_fields: tuple[str, ...] = ()
    target_fields: tuple[str, ...] = ()
    optional_fields: tuple[str, ...] = ()  # fields only some sources provide (render empty where absent)
    template_group: str = ""
    notes: tuple[str, ...] = ()

    def to_example(self, row: Row, row_index: int, *, faithful: bool = False) -> Example | None:
        """Convert one source row; None for rows the task drops (e.g. unlabelled, label -1)."""
        parsed = self.parser(row, faithful)
        if parsed is None:
            return None
        return Example(task=self.name, id=row_id(row, row_index), fields=quote_fields(parsed.fields, self.quoted_fields),
                       label=parsed.label, options=parsed.options,
                       references=parsed.references or (parsed.label,), raw_options=parsed.raw_options)


def row_id(row: Row, row_index: int) -> str:
    """The row's stable id: its source id column (dicts joined by '-'), else its row number."""
    for key in ID_COLUMNS:
        value = row.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, Mapping):
            return "-".join(str(v) for v in value.values())
        return str(value)
    return str(row_index)


# ----------------------------------------------------------------------------------------------
# Row-parser building blocks
# ----------------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    """A field value as prompt text (None -> empty)."""
    return "" if value is None else str(value)


def _quote(text: str) -> str:
    """Wrap in double quotes, as the authors' code does for some question/sentence fields."""
    return f'"{text}"'


def _fields(row: Row, mapping: Sequence[tuple[str, str]]) -> tuple:
    """(field, text) pairs from (field name, source column) pairs."""
    return tuple((name, _text(row[col])) for name, col in mapping)


def quote_fields(fields: Sequence[tuple[str, str]], names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The fields with those named in `names` wrapped in double quotes."""
    return tuple((name, _quote(text) if name in names else text) for name, text in fields)


def _pick(options: Sequence[str], index: int, faithful: bool) -> str | None:
    """The option at `index`; label -1 (unlabelled) is dropped, or (faithful) Python's options[-1]."""
    if index < 0:
        return options[index] if faithful else None
    return options[index]


def _dedupe(items: Sequence[str]) -> tuple[str, ...]:
    """Items in first-seen order without duplicates."""
    return tuple(dict.fromkeys(items))


def class_label(mapping: Sequence[tuple[str, str]], options: Sequence[str], *,
                label_col: str = "label") -> Parser:
    """Parser for a fixed option list indexed by an integer label column."""
    options = tuple(options)

    def parse(row: Row, faithful: bool) -> Parsed | None:
        label = _pick(options, int(row[label_col]), faithful)
        if label is None:
            return None
        return Parsed(_fields(row, mapping), label, options)
    return parse


def choice_columns(mapping: Sequence[tuple[str, str]], option_cols: Sequence[str], *,
                   label_col: str = "label", first_label: int = 0,
                   clean: Callable[[str], str] = lambda s: s) -> Parser:
    """Parser whose options are the texts of several columns and whose label indexes them."""

    def parse(row: Row, faithful: bool) -> Parsed | None:
        raw = row[label_col]
        if raw is None or raw == "":
            return None
        options = tuple(clean(_text(row[c])) for c in option_cols)
        label = _pick(options, int(raw) - first_label, faithful)
        if label is None:
            return None
        return Parsed(_fields(row, mapping), label, options)
    return parse


def generation(mapping: Sequence[tuple[str, str]], target_col: str) -> Parser:
    """Parser for a generative task: prompt fields plus one target column."""

    def parse(row: Row, faithful: bool) -> Parsed | None:
        return Parsed(_fields(row, mapping), _text(row[target_col]))
    return parse


# ----------------------------------------------------------------------------------------------
# Task-specific parsers (each mirrors the authors' preprocessing; deviations are in `notes`)
# ----------------------------------------------------------------------------------------------

def _letter_choices(question_field: str, question_col: str, *, quote_if_unquoted: bool = False,
                    optional_fact: bool = False) -> Parser:
    """ARC / OpenBookQA: options = `choices.text`, label = the choice whose letter is `answerKey`;
    OpenBookQA's fact (hub config `additional`) follows the question stem, as in the original.

    Faithful: the options are the choices joined by "; " and split again at every ";" (the
    original's bug: a choice containing ";" becomes two options, and the label is the piece at the
    answer's index).
    """

    def parse(row: Row, faithful: bool) -> Parsed | None:
        options = tuple(_text(t) for t in row["choices"]["text"])
        if faithful:
            options = tuple(part.strip() for part in "; ".join(options).split(";"))
        key = _text(row["answerKey"]).strip()
        keys = [_text(k).strip() for k in row["choices"]["label"]]
        if key not in keys:
            return None
        question = _text(row[question_col])
        if quote_if_unquoted and '"' not in question:
            question = _quote(question)
        fields = ((question_field, question),)
        if optional_fact and row.get("fact1"):
            fields += (("fact", _text(row["fact1"])),)
        return Parsed(fields, options[keys.index(key)], options)
    return parse


def _sentiment140(row: Row, faithful: bool) -> Parsed | None:
    """Polarity 0/2/4 -> negative for {0, 1, 2} (neutral counts as negative, as in the original)."""
    options = ("negative", "positive")
    label = options[0] if int(row["sentiment"]) in (0, 1, 2) else options[1]
    return Parsed((("text", _text(row["text"])),), label, options)


def _bool_q(row: Row, faithful: bool) -> Parsed | None:
    """BoolQ from super_glue (label 0 = False, 1 = True); answers are "True" / "False"."""
    if int(row["label"]) < 0:
        return None
    options = ("True", "False")
    label = "True" if int(row["label"]) == 1 else "False"
    return Parsed((("question", _text(row["question"])), ("text", _text(row["passage"]))),
                  label, options)


def _wic(row: Row, faithful: bool) -> Parsed | None:
    """WiC: label 1 (same sense) -> "True". Faithful: the original's inverted options[label]."""
    options = ("True", "False")
    index = int(row["label"])
    if faithful:
        label = options[index]  # original: 0 -> "True", 1 -> "False", -1 -> "False"
    elif index < 0:
        return None
    else:
        label = "True" if index == 1 else "False"
    fields = _fields(row, (("word", "word"), ("sentence1", "sentence1"), ("sentence2", "sentence2")))
    return Parsed(fields, label, options)


STSB_OPTIONS = ("0", "1", "2", "3", "4", "5")


def _stsb(row: Row, faithful: bool) -> Parsed | None:
    """STS-B: score rounded half-up to 0..5 (faithful: floored); the raw score is the reference."""
    score = float(row["label"])
    if score < 0:
        return None
    label = str(int(score) if faithful else math.floor(score + 0.5))
    fields = _fields(row, (("sentence1", "sentence1"), ("sentence2", "sentence2")))
    return Parsed(fields, label, STSB_OPTIONS, (f"{score:g}",))


def _hellaswag(row: Row, faithful: bool) -> Parsed | None:
    """HellaSwag: options = the 4 endings without a final '.', label = ending at int(label)."""
    if _text(row["label"]) == "":
        return None
    raw = tuple(_text(e) for e in row["endings"])
    options = tuple(e.rstrip(".") for e in raw)
    return Parsed((("context", _text(row["ctx"])),), options[int(row["label"])], options, raw_options=raw)


def _story_cloze(row: Row, faithful: bool) -> Parsed | None:
    """Story Cloze 2016 tsv row: context = the 4 sentences, options = the 2 endings (label 1/2)."""
    context = " ".join(_text(row[f"InputSentence{i}"]) for i in range(1, 5))
    options = (_text(row["RandomFifthSentenceQuiz1"]), _text(row["RandomFifthSentenceQuiz2"]))
    return Parsed((("context", context),), options[int(row["AnswerRightEnding"]) - 1], options)


def _record(row: Row, faithful: bool) -> Parsed | None:
    """ReCoRD: options = entity + query text after @placeholder; label = first answer + same."""
    answers = list(row["answers"])
    if not answers:
        return None
    right = _text(row["query"]).split("@placeholder", 1)[1]
    options = _dedupe([_text(e) + right for e in row["entities"]])
    refs = _dedupe([_text(a) + right for a in answers])
    fields = _fields(row, (("passage", "passage"), ("query", "query")))
    return Parsed(fields, refs[0], options, refs[:1] if faithful else refs)


def _dpr_raw(row: Row, faithful: bool) -> Parsed | None:
    """DPR: options = each candidate + the rest of the sentence after the pronoun."""
    suffix = " " + _text(row["sentence"]).split(" " + _text(row["pronoun"]) + " ")[-1].rstrip(".")
    options = tuple(_text(c) + suffix for c in row["candidates"])
    label = _pick(options, int(row["label"]), faithful)
    if label is None:
        return None
    return Parsed(_fields(row, (("sentence", "sentence"), ("pronoun", "pronoun"))), label, options)


_POSSESSIVES = ("his ", "her ", "its ")


def _wsc273(row: Row, faithful: bool) -> Parsed | None:
    """WSC273: options = the quote with the pronoun replaced by each candidate.

    The original's gold answer is the bare candidate, which is not among the shown options; by
    default the gold answer is the substituted sentence of the correct candidate (faithful: bare).
    """
    quote, candidates = _text(row["quote"]), [_text(c) for c in row["options"]]
    possessive = any(p in quote for p in _POSSESSIVES)
    pattern = re.compile(r"(?<![A-Za-z])" + re.escape(_text(row["pronoun"])))
    options = tuple(pattern.sub(lambda _m, c=c: c + ("'s" if possessive else ""), quote)
                    for c in candidates)
    index = int(row["label"])
    if index < 0:
        return None
    label = candidates[index] if faithful else options[index]
    return Parsed((("context", _text(row["text"])),), label, options)


def _squad(unanswerable: bool) -> Parser:
    """SQuAD v1/v2: label = first answer ("unanswerable" if none); references = all answers."""

    def parse(row: Row, faithful: bool) -> Parsed | None:
        answers = [_text(a) for a in row["answers"]["text"]]
        if not answers:
            if not unanswerable:
                return None
            answers = ["unanswerable"]
        refs = _dedupe(answers)
        fields = _fields(row, (("title", "title"), ("context", "context"), ("question", "question")))
        return Parsed(fields, answers[0], (), refs[:1] if faithful else refs)
    return parse


def _trivia_qa(row: Row, faithful: bool) -> Parsed | None:
    """TriviaQA: label = normalized_value; references = it + all normalized aliases."""
    answer = row["answer"]
    label = _text(answer["normalized_value"])
    refs = (label,) if faithful else _dedupe([label, *map(_text, answer["normalized_aliases"])])
    return Parsed((("question", _text(row["question"])),), label, (), refs)


def _drop(row: Row, faithful: bool) -> Parsed | None:
    """DROP: label = the first answer span (as the original)."""
    spans = [_text(s) for s in row["answers_spans"]["spans"]]
    if not spans:
        return None
    fields = _fields(row, (("context", "passage"), ("question", "question")))
    return Parsed(fields, spans[0], (), (spans[0],))


def _numbered(items: Sequence[Any]) -> str:
    """'1. a 2. b ...' as the original joins CoQA questions and answers."""
    return " ".join(f"{i}. {_text(x)}" for i, x in enumerate(items, start=1))


def _coqa(row: Row, faithful: bool) -> Parsed | None:
    """CoQA: the story, all questions numbered; target = all answers numbered."""
    fields = (("text", _text(row["story"])), ("numbered_questions", _numbered(row["questions"])))
    return Parsed(fields, _numbered(row["answers"]["input_text"]))


def _quac(row: Row, faithful: bool) -> Parsed | None:
    """QuAC: the first question of the dialogue and the first answer to it."""
    texts = row["answers"]["texts"]
    if not row["questions"] or not texts or not texts[0]:
        return None
    fields = _fields(row, (("background", "background"), ("section_title", "section_title"),
                           ("context", "context")))
    return Parsed(fields + (("question", _text(row["questions"][0])),), _text(texts[0][0]))


def _strip_bytes_literal(text: str) -> str:
    """math_dataset rows look like "b'...\\n'": remove the bytes-literal wrapping."""
    return text.replace("b'", "").replace("\\n'", "").replace("\n", "")


def _math_dataset(row: Row, faithful: bool) -> Parsed | None:
    """math_dataset algebra__linear_1d: question -> answer, bytes-literal wrapping stripped."""
    return Parsed((("question", _strip_bytes_literal(_text(row["question"]))),),
                  _strip_bytes_literal(_text(row["answer"])))


def _fix_punct(row: Row, faithful: bool) -> Parsed | None:
    """fix_punctuation: corrupted text (+ the original's re-appended last word) -> utterance."""
    original, corrupted = _text(row["utterance"]), _text(row["corrupted_cased"])
    match = re.search(r"[\S]+.{1}$", original)
    last_word = re.sub(r"[\.,\?!]", "", match.group()) if match else ""
    return Parsed((("no_punct", corrupted + last_word),), original)


def _common_gen(row: Row, faithful: bool) -> Parsed | None:
    """CommonGen: concepts joined by '; ' -> target sentence."""
    concepts = row["concepts"]
    text = "; ".join(map(_text, concepts)) if isinstance(concepts, list) else _text(concepts)
    return Parsed((("concepts", text),), _text(row["target"]))


def _dart(row: Row, faithful: bool) -> Parsed | None:
    """DART: triples joined ' ; ' inside and '; ' between triples, [bracketed] tags removed."""
    triples = "; ".join(" ; ".join(map(_text, t)) for t in row["tripleset"])
    triples = re.sub(r"\[(.*?)\]", "", triples.replace("\t", ""))
    texts = [_text(t) for t in row["annotations"]["text"]]
    if not texts:
        return None
    return Parsed((("tripleset", triples),), texts[0], (), texts[:1] if faithful else _dedupe(texts))


def _e2e(row: Row, faithful: bool) -> Parsed | None:
    """E2E: 'name[X], food[Y]' -> 'name = X, food = Y' -> human reference."""
    mr = re.sub(r"\]", "", re.sub(r"\[", " = ", _text(row["meaning_representation"])))
    return Parsed((("meaning_representation", mr),), _text(row["human_reference"]))


def _web_nlg(row: Row, faithful: bool) -> Parsed | None:
    """WebNLG: original triple sets joined by '; ', '_' -> ' ', '|' -> ','; target = first lex."""
    sets = row["original_triple_sets"]["otriple_set"]
    joined = "; ".join("; ".join(map(_text, s)) for s in sets)
    joined = joined.replace("_", " ").replace("|", ",")
    texts = [_text(t) for t in row["lex"]["text"]]
    if not texts:
        return None
    return Parsed((("input_string", joined),), texts[0], (), texts[:1] if faithful else _dedupe(texts))


LANGUAGE_NAMES = {"cs": "Czech", "en": "English", "es": "Spanish", "de": "German", "fi": "Finnish",
                  "fr": "French", "ro": "Romanian", "ru": "Russian", "tr": "Turkish"}


def _translation(lang1: str, lang2: str) -> Parser:
    """Translation pair: fields lang1, lang2 (language names), sent1, sent2; the label is sent2
    (the default direction); a template targeting sent1 translates the other way."""

    def parse(row: Row, faithful: bool) -> Parsed | None:
        pair = row["translation"]
        fields = (("lang1", LANGUAGE_NAMES[lang1]), ("lang2", LANGUAGE_NAMES[lang2]),
                  ("sent1", _text(pair[lang1])), ("sent2", _text(pair[lang2])))
        return Parsed(fields, fields[3][1])
    return parse


def _summary(mapping: Sequence[tuple[str, str]], target_col: str, *, leak_position: int) -> Parser:
    """Summarisation: default fields without the target; faithful inserts the target field where
    the original's SampleGen listed it (the answer leak of opin_* / newsroom)."""

    def parse(row: Row, faithful: bool) -> Parsed | None:
        fields = _fields(row, mapping)
        label = _text(row[target_col])
        if faithful:
            fields = fields[:leak_position] + ((target_col, label),) + fields[leak_position:]
        return Parsed(fields, label)
    return parse


def _opin_idebate_row(row: Row) -> dict[str, str]:
    """idebate.json entry -> the original's columns (claim, argument_sentences, debate_name)."""
    def fix_spacing(line: str) -> str:
        return line.replace(" ,", ",").replace(" .", ".").replace(" ;", ";")
    return {"claim": _text(row["_claim"]),
            "argument_sentences": " ".join(fix_spacing(_text(s))
                                           for s in row["_argument_sentences"].values()),
            "debate_name": _text(row["_debate_name"])}


def _opin_idebate(row: Row, faithful: bool) -> Parsed | None:
    """Opinion Abstracts (idebate): argument sentences + debate name -> claim."""
    return _summary((("argument_sentences", "argument_sentences"), ("debate_name", "debate_name")),
                    "claim", leak_position=0)(_opin_idebate_row(row), faithful)


def _opin_movie_row(row: Row) -> dict[str, str]:
    """rottentomatoes.json entry -> movie, numbered_reviews ('0)a 1)b'), critic_consensus, first."""
    critics = [_text(c) for c in row["_critics"].values()]
    return {"movie": _text(row["_movie_name"]),
            "numbered_reviews": " ".join(f"{i}){c}" for i, c in enumerate(critics)),
            "critic_consensus": _text(row["_critic_consensus"]),
            "first_review": critics[0] if critics else ""}


def _opin_movie(row: Row, faithful: bool) -> Parsed | None:
    """Opinion Abstracts (Rotten Tomatoes): reviews -> critic consensus."""
    mapping = (("movie", "movie"), ("numbered_reviews", "numbered_reviews"),
               ("first_review", "first_review"))
    return _summary(mapping, "critic_consensus", leak_position=2)(_opin_movie_row(row), faithful)


_BIGBENCH_CHOICE_LINE = re.compile(r"\n\s*choice:.*", re.DOTALL)
# What the original deleted from the `inputs` of some BIG-bench tasks (create_bigbench_task_prompts):
# every "Q: " and everything from the first " choice:" (social_iqa, strange_stories), every "A: " and
# "Options: " (causal_judgment).
_ORIGINAL_INPUT_DELETIONS = {
    "social_iqa": (r"Q: ", r" choice:.*"), "strange_stories": (r"Q: ", r" choice:.*"),
    "causal_judgment": (r"A: ", r"Options: ")}


def original_bigbench_input(task: str, text: str) -> str:
    """BIG-bench `inputs` with the original's per-task deletions, and nothing else."""
    for pattern in _ORIGINAL_INPUT_DELETIONS.get(task, ()):
        text = re.sub(pattern, "", text, flags=re.DOTALL)
    return text


def clean_bigbench_input(text: str) -> str:
    """BIG-bench hub `inputs` without the default 'Q: ' / choice lines / trailing 'A:' decoration
    and surrounding whitespace (every task; the original cleaned some tasks only)."""
    text = _BIGBENCH_CHOICE_LINE.sub("", text)
    text = re.sub(r"\n?A:\s*$", "", text)
    text = re.sub(r"^Q: ", "", text)
    return text.strip()


def _bigbench(task: str, num_options: int | None = None) -> Parser:
    """BIG-bench (tasksource schema): question = the inputs with the original's deletions for `task`
    (default: also cleaned, `clean_bigbench_input`), options = multiple_choice_targets, label = first
    target; `num_options` keeps only rows with that many options."""

    def parse(row: Row, faithful: bool) -> Parsed | None:
        options = tuple(_text(o) for o in row["multiple_choice_targets"])
        if num_options is not None and len(options) != num_options:
            return None
        label = _text(row["targets"][0])
        question = original_bigbench_input(task, _text(row["inputs"]))
        return Parsed((("question", question if faithful else clean_bigbench_input(question)),), label, options)
    return parse


def gsm8k_options(solution: str, answer: str, example_id: str) -> tuple[str, ...]:
    """Up to 3 distinct numbers from the worked solution plus the true answer, shuffled with a
    generator seeded by the example id (deterministic across runs and machines)."""
    rng = random.Random(f"gsm8k-options:{example_id}")
    numbers = [n for n in re.findall(r"[0-9]+", solution) if n != answer]
    rng.shuffle(numbers)
    options = list(_dedupe(numbers)[:3]) + [answer]
    rng.shuffle(options)
    return tuple(options)


def _gsm8k(row: Row, faithful: bool) -> Parsed | None:
    """GSM8K as multiple choice: answer = text after '####', options mined from the solution."""
    solution, answer = _text(row["answer"]).split("####")
    answer = answer.strip()
    options = gsm8k_options(solution.rstrip(" "), answer, _text(row["question"]))
    return Parsed((("question", _text(row["question"])),), answer, options)


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------

GLUE, SUPER_GLUE = "nyu-mll/glue", "aps/super_glue"
NLI3 = ("yes", "it is not possible to tell", "no")
YES_NO, NO_YES = ("yes", "no"), ("no", "yes")
SENTIMENT = ("negative", "positive")
TREC_COARSE = ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")
AG_NEWS = ("World", "Sports", "Business", "Sci/Tech")

_REGISTRY: dict[str, Task] = {}


def _local_dir(name: str) -> str:
    """Default local directory name: the task name with '/' replaced by '_'."""
    return name.replace("/", "_")


def _register(name: str, cluster: str | None, category: str, source: Source, parser: Parser,
              metric: str, *, generative: bool = False, fields: Sequence[str],
              label_name: str = "label", options_field: str | None = "options",
              solution_options_field: str | None = None, quoted_fields: Sequence[str] = (),
              target_fields: Sequence[str] = (), optional_fields: Sequence[str] = (),
              template_group: str | None = None, notes: Sequence[str] = ()) -> None:
    """Add one task to the registry (names must be unique, metrics known)."""
    assert name not in _REGISTRY, name
    assert metric in METRICS, (name, metric)
    _REGISTRY[name] = Task(name=name, cluster=cluster, category=category, source=source,
                           parser=parser, metric=metric, generative=generative,
                           fields=tuple(fields), label_name=label_name,
                           options_field=None if generative else options_field,
                           solution_options_field=solution_options_field, quoted_fields=tuple(quoted_fields),
                           target_fields=tuple(target_fields),
                           optional_fields=tuple(optional_fields),
                           template_group=template_group or name, notes=tuple(notes))


def _hub(hub_id: str | None, config: str | None, train: str | None, eval_: str | None,
         local_dir: str, columns: Sequence[str], **kw: Any) -> Source:
    """Shorthand for `Source`."""
    return Source(hub_id, config, train, eval_, local_dir, tuple(columns), **kw)


def _build_registry() -> None:
    """Register every task of the paper (FLAN clusters, test-only tasks, BIG-bench, GSM8K)."""
    # --- nli -----------------------------------------------------------------------------------
    anli_options = ("Yes", "It's impossible to say", "No")
    for r in (1, 2, 3):
        _register(f"anli_r{r}", "nli", NLU,
                  _hub("facebook/anli", None, f"train_r{r}", f"test_r{r}", f"anli_r{r}",
                       ("premise", "hypothesis", "label"), local_train="train", local_eval="test"),
                  class_label((("context", "premise"), ("hypothesis", "hypothesis")), anli_options),
                  "accuracy", fields=("context", "hypothesis"), template_group="anli")
    _register("rte", "nli", NLU,
              _hub(GLUE, "rte", "train", "validation", "rte", ("sentence1", "sentence2", "label"),
                   tfds_name="glue/rte"),
              class_label((("premise", "sentence1"), ("hypothesis", "sentence2")), YES_NO),
              "accuracy", fields=("premise", "hypothesis"))
    _register("snli", "nli", NLU,
              _hub("stanfordnlp/snli", None, "train", "validation", "snli",
                   ("premise", "hypothesis", "label"), faithful_eval_split="test", tfds_name="snli"),
              class_label((("premise", "premise"), ("hypothesis", "hypothesis")), NLI3),
              "accuracy", fields=("premise", "hypothesis"),
              notes=("eval split validation (the original tested on test; both labelled)",
                     "label -1 rows dropped in both modes (the original filtered them too)"))
    _register("cb", "nli", NLU,
              _hub(SUPER_GLUE, "cb", "train", "validation", "cb", ("premise", "hypothesis", "label"),
                   tfds_name="super_glue/cb"),
              class_label((("premise", "premise"), ("hypothesis", "hypothesis")),
                          ("yes", "no", "it's impossible to say")),
              "accuracy", fields=("premise", "hypothesis"))
    mnli_fields = (("premise", "premise"), ("hypothesis", "hypothesis"))
    _register("mnli", "nli", NLU,
              _hub(GLUE, "mnli", "train", "validation_matched", "mnli",
                   ("premise", "hypothesis", "label"), tfds_name="glue/mnli"),
              class_label(mnli_fields, NLI3), "accuracy", fields=("premise", "hypothesis"),
              template_group="mnli")
    for variant in ("matched", "mismatched"):
        _register(f"mnli_{variant}", "nli", NLU,
                  _hub(GLUE, "mnli", None, f"validation_{variant}", "mnli",
                       ("premise", "hypothesis", "label"), tfds_name="glue/mnli"),
                  class_label(mnli_fields, NLI3), "accuracy",
                  fields=("premise", "hypothesis"), template_group="mnli",
                  notes=(f"test-only view of MNLI validation_{variant}",))
    _register("wnli", "nli", NLU,
              _hub(GLUE, "wnli", "train", "validation", "wnli", ("sentence1", "sentence2", "label"),
                   tfds_name="glue/wnli"),
              class_label((("sentence1", "sentence1"), ("sentence2", "sentence2")), NO_YES),
              "accuracy", fields=("sentence1", "sentence2"))
    _register("qnli", "nli", NLU,
              _hub(GLUE, "qnli", "train", "validation", "qnli", ("question", "sentence", "label"),
                   tfds_name="glue/qnli"),
              class_label((("question", "question"), ("sentence", "sentence")), YES_NO),
              "accuracy", fields=("question", "sentence"), quoted_fields=("question", "sentence"),
              notes=("question and sentence wrapped in double quotes, as the original",))
    # --- commonsense ---------------------------------------------------------------------------
    _register("copa", "commonsense", NLU,
              _hub(SUPER_GLUE, "copa", "train", "validation", "copa",
                   ("premise", "choice1", "choice2", "question", "label"),
                   faithful_eval_split="test", tfds_name="super_glue/copa"),
              choice_columns((("premise", "premise"), ("question", "question")),
                             ("choice1", "choice2")),
              "accuracy", fields=("premise", "question"), options_field=None, solution_options_field="options",
              notes=("eval split validation (faithful: the unlabelled test split, every gold = choice2)",))
    _register("hellaswag", "commonsense", NLU,
              _hub("Rowan/hellaswag", None, "train", "validation", "hellaswag",
                   ("ctx", "endings", "label")),
              _hellaswag, "accuracy", fields=("context",), options_field="endings")
    _register("piqa", "commonsense", NLU,
              _hub("ybisk/piqa", None, "train", "validation", "piqa", ("goal", "sol1", "sol2", "label"),
                   tfds_name="piqa"),
              choice_columns((("goal", "goal"),), ("sol1", "sol2")), "accuracy",
              fields=("goal",))
    _register("story_cloze", "commonsense", NLU,
              _hub(None, None, None, "test", "story_cloze",
                   ("InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4",
                    "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2", "AnswerRightEnding")),
              _story_cloze, "accuracy", fields=("context",),
              notes=("manual download: <data_dir>/story_cloze/test.jsonl|parquet holding the rows of "
                     "cloze_test_spring2016.tsv; no train split (the original reused the test file)",))
    # --- sentiment -----------------------------------------------------------------------------
    _register("imdb_reviews", "sentiment", NLU,
              _hub("stanfordnlp/imdb", "plain_text", "train", "test", "imdb", ("text", "label"),
                   tfds_name="imdb_reviews/plain_text"),
              class_label((("text", "text"),), SENTIMENT), "accuracy", fields=("text",))
    _register("sentiment140", "sentiment", NLU,
              _hub("stanfordnlp/sentiment140", None, "train", "test", "sentiment140",
                   ("text", "sentiment")),
              _sentiment140, "accuracy", fields=("text",),
              notes=("polarity 0/2/4: neutral (2) counts as negative, as in the original",))
    _register("sst2", "sentiment", NLU,
              _hub(GLUE, "sst2", "train", "validation", "sst2", ("sentence", "label"),
                   tfds_name="glue/sst2"),
              class_label((("sentence", "sentence"),), SENTIMENT), "accuracy",
              fields=("sentence",),
              notes=("hub source glue/sst2 (the original used stanfordnlp/sst2: same rows)",))
    _register("yelp_polarity_reviews", "sentiment", NLU,
              _hub("fancyzhx/yelp_polarity", None, "train", "test", "yelp_polarity_reviews",
                   ("text", "label")),
              class_label((("text", "text"),), SENTIMENT), "accuracy", fields=("text",))
    # --- paraphrase ----------------------------------------------------------------------------
    pair = (("sentence1", "sentence1"), ("sentence2", "sentence2"))
    _register("mrpc", "paraphrase", NLU,
              _hub(GLUE, "mrpc", "train", "validation", "mrpc", ("sentence1", "sentence2", "label"),
                   tfds_name="glue/mrpc"),
              class_label(pair, NO_YES), "accuracy", fields=("sentence1", "sentence2"))
    _register("qqp", "paraphrase", NLU,
              _hub(GLUE, "qqp", "train", "validation", "qqp", ("question1", "question2", "label"),
                   tfds_name="glue/qqp"),
              class_label((("question1", "question1"), ("question2", "question2")), NO_YES),
              "accuracy", fields=("question1", "question2"))
    _register("paws_wiki", "paraphrase", NLU,
              _hub("google-research-datasets/paws", "labeled_final", "train", "test", "paws_wiki",
                   ("sentence1", "sentence2", "label"), tfds_name="paws_wiki"),
              class_label(pair, NO_YES), "accuracy", fields=("sentence1", "sentence2"))
    _register("stsb", "paraphrase", NLU,
              _hub(GLUE, "stsb", "train", "validation", "stsb", ("sentence1", "sentence2", "label"),
                   tfds_name="glue/stsb"),
              _stsb, "pearson_spearman", fields=("sentence1", "sentence2"),
              notes=("label = score rounded half-up to 0..5 (faithful: floored, int(score)); "
                     "references hold the raw score for Pearson/Spearman",))
    # --- closed_book_qa ------------------------------------------------------------------------
    arc_columns = ("question", "choices", "answerKey")
    for name, config, local in (("arc", "ARC-Challenge", "arc_challenge"),
                                ("arc_easy", "ARC-Easy", "arc_easy")):
        _register(name, "closed_book_qa", NLU,
                  _hub("allenai/ai2_arc", config, "train", "test", local, arc_columns,
                       tfds_name=f"ai2_arc/{config}"),
                  _letter_choices("question", "question"), "accuracy", fields=("question",),
                  template_group="arc")
    for name, config in (("trivia_qa_full", "rc.nocontext"),
                         ("trivia_qa_wiki", "rc.wikipedia.nocontext")):
        _register(name, "closed_book_qa", NLU,
                  _hub("mandarjoshi/trivia_qa", config, "train", "validation", name,
                       ("question", "answer")),
                  _trivia_qa, "triviaqa_em_f1", generative=True, fields=("question",),
                  template_group="trivia_qa",
                  notes=("references = normalized_value + all normalized aliases "
                         "(faithful: normalized_value only)",))
    # --- reading_comp --------------------------------------------------------------------------
    _register("bool_q", "reading_comp", NLU,
              _hub(SUPER_GLUE, "boolq", "train", "validation", "boolq",
                   ("question", "passage", "label"), tfds_name="super_glue/boolq"),
              _bool_q, "accuracy", fields=("question", "text"),
              notes=("hub source super_glue/boolq (the original used google/boolq: same items)",))
    _register("drop", "reading_comp", NLU,
              _hub("ucinlp/drop", None, "train", "validation", "drop",
                   ("passage", "question", "answers_spans")),
              _drop, "squad_em_f1", generative=True, fields=("context", "question"))
    _register("multirc", "reading_comp", NLU,
              _hub(SUPER_GLUE, "multirc", "train", "validation", "multirc",
                   ("paragraph", "question", "answer", "label"), tfds_name="super_glue/multirc"),
              class_label((("paragraph", "paragraph"), ("question", "question"),
                           ("response", "answer")), NO_YES),
              "accuracy", fields=("paragraph", "question", "response"))
    _register("openbookqa", "reading_comp", NLU,
              _hub("allenai/openbookqa", "additional", "train", "test", "openbookqa",
                   ("question_stem", "choices", "answerKey", "fact1"), optional_columns=("fact1",)),
              _letter_choices("question_stem", "question_stem", quote_if_unquoted=True,
                              optional_fact=True),
              "accuracy", fields=("question_stem", "fact"), optional_fields=("fact",),
              notes=("the `fact` field exists only with the hub's `additional` config; the local "
                     "bundle holds the `main` config, whose examples have no `fact` field",))
    _register("squad", "reading_comp", NLU,
              _hub("rajpurkar/squad", None, "train", "validation", "squad",
                   ("title", "context", "question", "answers"), tfds_name="squad/v1.1"),
              _squad(unanswerable=False), "squad_em_f1", generative=True,
              fields=("title", "context", "question"),
              notes=("references = all gold answers (faithful: the first only)",))
    _register("squad_v2", "reading_comp", NLU,
              _hub("rajpurkar/squad_v2", None, "train", "validation", "squad_v2",
                   ("title", "context", "question", "answers")),
              _squad(unanswerable=True), "squad_em_f1", generative=True,
              fields=("title", "context", "question"),
              notes=("unanswerable questions: target 'unanswerable'",))
    # --- reading_comp_with_cs ------------------------------------------------------------------
    _register("cosmos_qa", "reading_comp_with_cs", NLU,
              _hub("allenai/cosmos_qa", None, "train", "validation", "cosmos_qa",
                   ("context", "question", "answer0", "answer1", "answer2", "answer3", "label"),
                   tfds_name="cosmos_qa"),
              choice_columns((("context", "context"), ("question", "question")),
                             ("answer0", "answer1", "answer2", "answer3"),
                             clean=lambda s: s.replace(" .", ".")),
              "accuracy", fields=("context", "question"), quoted_fields=("question",))
    _register("record", "reading_comp_with_cs", NLU,
              _hub(SUPER_GLUE, "record", "train", "validation", "record",
                   ("passage", "query", "entities", "answers"), tfds_name="super_glue/record"),
              _record, "squad_em_f1", fields=("passage", "query"),
              notes=("references = all answers + query tail (faithful: the first only)",))
    # --- coreference ---------------------------------------------------------------------------
    _register("dpr_raw", "coreference", NLU,
              _hub("coref-data/dpr_raw", None, "train", "test", "dpr_raw",
                   ("sentence", "pronoun", "candidates", "label")),
              _dpr_raw, "accuracy", fields=("sentence", "pronoun"), options_field=None,
              notes=("metric accuracy (the original's simple_accuracy was always 0)",))
    _register("winogrande", "coreference", NLU,
              _hub("allenai/winogrande", "winogrande_xl", "train", "validation", "winogrande",
                   ("sentence", "option1", "option2", "answer")),
              choice_columns((("context", "sentence"),), ("option1", "option2"), label_col="answer",
                             first_label=1),
              "accuracy", fields=("context",))
    _register("wsc273", "coreference", NLU,
              _hub("coref-data/davis_wsc_raw", "wsc273", None, "test", "wsc273",
                   ("text", "pronoun", "quote", "options", "label")),
              _wsc273, "accuracy", fields=("context",),
              notes=("no train split (the original reused the test split as train)",
                     "gold = the substituted sentence shown as option (faithful: bare candidate)"))
    # --- misc ----------------------------------------------------------------------------------
    _register("coqa", "misc", NLU,
              _hub("stanfordnlp/coqa", None, "train", "validation", "coqa",
                   ("story", "questions", "answers")),
              _coqa, "rouge", generative=True, fields=("text", "numbered_questions"),
              notes=("metric ROUGE (the original's simple_accuracy was always 0)",))
    _register("quac", "misc", NLU,
              _hub("allenai/quac", None, "train", "validation", "quac",
                   ("background", "section_title", "context", "questions", "answers")),
              _quac, "squad_em_f1", generative=True,
              fields=("background", "section_title", "context", "question"),
              notes=("metric SQuAD EM/F1 (the original's simple_accuracy was always 0)",))
    _register("trec", "misc", NLU,
              _hub("CogComp/trec", None, "train", "test", "trec", ("text", "coarse_label")),
              class_label((("text", "text"),), TREC_COARSE, label_col="coarse_label"),
              "accuracy", fields=("text",), quoted_fields=("text",))
    _register("cola", "misc", NLU,
              _hub(GLUE, "cola", "train", "validation", "cola", ("sentence", "label"),
                   faithful_eval_split="test", tfds_name="glue/cola"),
              class_label((("sentence", "sentence"),), ("unacceptable", "acceptable")),
              "matthews_corr", fields=("sentence",),
              notes=("eval split validation (faithful: unlabelled test, every gold = acceptable)",))
    _register("wic", "misc", NLU,
              _hub(SUPER_GLUE, "wic", "train", "validation", "wic",
                   ("word", "sentence1", "sentence2", "label"),
                   faithful_eval_split="test", tfds_name="super_glue/wic"),
              _wic, "accuracy", fields=("word", "sentence1", "sentence2"), options_field=None,
              notes=("label 1 (same sense) -> True (faithful: inverted, 0 -> True)",
                     "eval split validation (faithful: unlabelled test, every gold = False)"))
    _register("math_dataset", "misc", NLU,
              _hub("deepmind/math_dataset", "algebra__linear_1d", "train", "test", "math_dataset",
                   ("question", "answer")),
              _math_dataset, "accuracy", generative=True, fields=("question",))
    _register("fix_punct", "misc", NLU,
              _hub("nbroad/fix_punctuation", None, None, "train", "fix_punct",
                   ("utterance", "corrupted_cased")),
              _fix_punct, "edit_distance", generative=True, fields=("no_punct",),
              notes=("the source has only a train split: it is the eval split, no train split",))
    # --- struct_to_text_nlg --------------------------------------------------------------------
    _register("common_gen", "struct_to_text_nlg", NLG,
              _hub("allenai/common_gen", None, "train", "validation", "common_gen",
                   ("concepts", "target")),
              _common_gen, "rouge", generative=True, fields=("concepts",),
              label_name="target")
    _register("dart", "struct_to_text_nlg", NLG,
              _hub("Yale-LILY/dart", None, "train", "test", "dart", ("tripleset", "annotations")),
              _dart, "rouge", generative=True, fields=("tripleset",),
              label_name="annotation",
              notes=("triples separated by '; ' (the original concatenated them without separator); "
                     "references = all annotations (faithful: the first)",))
    _register("e2e_nlg", "struct_to_text_nlg", NLG,
              _hub("tuetschek/e2e_nlg", None, "train", "test", "e2e_nlg",
                   ("meaning_representation", "human_reference")),
              _e2e, "rouge", generative=True,
              fields=("meaning_representation",),
              label_name="human_reference")
    _register("web_nlg", "struct_to_text_nlg", NLG,
              _hub("webnlg-challenge/web_nlg", "release_v1", "full", "full", "web_nlg",
                   ("original_triple_sets", "lex")),
              _web_nlg, "rouge", generative=True, fields=("input_string",),
              label_name="lex", notes=("release_v1 has one split ('full'): train and eval alike",))
    # --- translation_nlg -----------------------------------------------------------------------
    translation_fields = ("lang1", "lang2", "sent1", "sent2")
    for lang in ("de", "es", "fr"):
        _register(f"para_crawl/en{lang}", "translation_nlg", NLG,
                  _hub("para_crawl", f"en{lang}", "train", None, f"para_crawl_en{lang}",
                       ("translation",)),
                  _translation("en", lang), "bleu", generative=True, fields=translation_fields,
                  label_name="sent2", target_fields=("sent1", "sent2"), template_group="para_crawl",
                  notes=("the source has only a train split (no eval split)",))
    for lang in ("cs", "de", "fi", "ro", "ru", "tr"):
        _register(f"wmt16/{lang}-en", "translation_nlg", NLG,
                  _hub("wmt/wmt16", f"{lang}-en", "train", "test", f"wmt16_{lang}-en",
                       ("translation",)),
                  _translation(lang, "en"), "bleu", generative=True, fields=translation_fields,
                  label_name="sent2", target_fields=("sent1", "sent2"), template_group="wmt16")
    # --- summarization_nlg (+ newsroom, which the original left in no cluster) -----------------
    summaries = (("aeslc", "Yale-LILY/aeslc", None, "email_body", "subject_line"),
                 ("cnn_dailymail", "abisee/cnn_dailymail", "3.0.0", "article", "highlights"),
                 ("gigaword", "Harvard/gigaword", None, "document", "summary"),
                 ("samsum", "Samsung/samsum", None, "dialogue", "summary"))
    for name, hub_id, config, text_col, target_col in summaries:
        _register(name, "summarization_nlg", NLG,
                  _hub(hub_id, config, "train", "test", name, (text_col, target_col)),
                  generation(((text_col, text_col),), target_col), "rouge", generative=True,
                  fields=(text_col,), label_name=target_col)
    _register("xsum", "summarization_nlg", NLG,
              _hub("knkarthick/xsum", None, "train", "test", "xsum", ("dialogue", "summary")),
              generation((("text", "dialogue"),), "summary"), "rouge", generative=True,
              fields=("text",), label_name="summary")
    _register("ag_news", "summarization_nlg", NLU,
              _hub("fancyzhx/ag_news", None, "train", "test", "ag_news", ("text", "label")),
              class_label((("text", "text"),), AG_NEWS), "accuracy", fields=("title", "text"),
              optional_fields=("title",),
              notes=("FLAN puts AG News in the summarization cluster; it is a 4-way classification",
                     "hub source fancyzhx/ag_news (text = title + description, labels 0-3); the "
                     "original used sh0416/ag_news (separate title/description, labels 1-4), so "
                     "the `title` its templates 0 and 1 show renders empty here and its "
                     "SampleGen blocks had a Title line"))
    for name, parser, order, target in (
            ("opin_idebate", _opin_idebate, ("argument_sentences", "debate_name"), "claim"),
            ("opin_movie", _opin_movie,
             ("movie", "numbered_reviews", "first_review"), "critic_consensus")):
        _register(name, "summarization_nlg", NLG,
                  _hub(None, None, None, "test", name,
                       ("_claim", "_argument_sentences", "_debate_name") if name == "opin_idebate"
                       else ("_movie_name", "_critics", "_critic_consensus")),
                  parser, "rouge", generative=True, fields=order, label_name=target,
                  notes=("manual download: <data_dir>/<task>/test.jsonl|parquet holding the entries "
                         "of the Opinion Abstracts json; no train split (the original reused it)",
                         "the answer field is not a prompt field (faithful: it is, the answer leak)",
                         "metric ROUGE (the original's simple_accuracy was always 0)"))
    _register("newsroom", None, NLG,
              _hub(None, None, "train", "test", "newsroom", ("title", "text", "summary")),
              _summary((("title", "title"), ("text", "text")), "summary", leak_position=2),
              "rouge", generative=True, fields=("title", "text"),
              label_name="summary",
              notes=("manual download: <data_dir>/newsroom/{train,test}.jsonl from the release",
                     "the answer field is not a prompt field (faithful: it is, the answer leak)"))
    # --- BIG-bench test tasks (tasksource/bigbench; test items = its train split) ---------------
    bigbench = (("figure_of_speech_detection", "figure_of_speech_detection", None,
                 ("figure_of_speech_detection/task.json",)),
                ("logical_deduction", "logical_deduction", None,
                 tuple(f"logical_deduction/{n}_objects/task.json" for n in ("three", "five", "seven"))),
                ("social_iqa", "social_iqa", None, ("social_iqa/task.json",)),
                ("strange_stories", "strange_stories", None,
                 ("strange_stories/boolean/task.json", "strange_stories/multiple_choice/task.json")),
                ("causal_judgment", "causal_judgment", None, ("causal_judgment/task.json",)))
    bigbench += tuple((f"tracking_shuffled_objects_{word}", "tracking_shuffled_objects", n,
                       (f"tracking_shuffled_objects/{word}_objects/task.json",))
                      for word, n in (("three", 3), ("five", 5), ("seven", 7)))
    for name, config, n_options, files in bigbench:
        _register(name, None, NLU,
                  _hub("tasksource/bigbench", config, "validation", "train", "bigbench",
                       ("inputs", "targets", "multiple_choice_targets"),
                       local_format="bigbench_json", bigbench_files=files),
                  _bigbench(name, n_options), "accuracy", fields=("question",),
                  template_group="tracking_shuffled_objects" if n_options else name,
                  notes=("test items = tasksource's train split, in-context examples = its "
                         "validation split (as the original)",))
    _register("gsm8k", None, NLU,
              _hub("openai/gsm8k", "main", "train", "test", "gsm8k", ("question", "answer")),
              _gsm8k, "accuracy", fields=("question",),
              notes=("multiple choice: up to 3 numbers of the worked solution + the answer, "
                     "shuffled with a generator seeded by the question text; every occurrence of the "
                     "answer is removed from the mined numbers (the original removed one, so the "
                     "answer could appear twice)",
                     "in-context examples from the train split (the original drew them from test)"))


_build_registry()

# ----------------------------------------------------------------------------------------------
# Task lists of the original (config.py / make_mixtures.py)
# ----------------------------------------------------------------------------------------------

CLUSTERS: dict[str, tuple[str, ...]] = {
    "nli": ("anli_r1", "anli_r2", "anli_r3", "rte", "cb", "snli", "mnli", "wnli", "qnli"),
    "commonsense": ("copa", "hellaswag", "piqa", "story_cloze"),
    "sentiment": ("imdb_reviews", "sentiment140", "sst2", "yelp_polarity_reviews"),
    "paraphrase": ("mrpc", "qqp", "paws_wiki", "stsb"),
    "closed_book_qa": ("arc", "arc_easy", "trivia_qa_full", "trivia_qa_wiki"),
    "reading_comp": ("bool_q", "drop", "multirc", "openbookqa", "squad", "squad_v2"),
    "reading_comp_with_cs": ("cosmos_qa", "record"),
    "coreference": ("dpr_raw", "winogrande", "wsc273"),
    "misc": ("coqa", "quac", "trec", "cola", "wic", "math_dataset", "fix_punct"),
    "struct_to_text_nlg": ("common_gen", "dart", "e2e_nlg", "web_nlg"),
    "translation_nlg": ("para_crawl/ende", "para_crawl/enes", "para_crawl/enfr", "wmt16/cs-en",
                        "wmt16/de-en", "wmt16/fi-en", "wmt16/ro-en", "wmt16/ru-en", "wmt16/tr-en"),
    "summarization_nlg": ("aeslc", "ag_news", "cnn_dailymail", "gigaword", "samsum", "xsum",
                          "opin_idebate", "opin_movie"),
}
CATEGORY_OF_CLUSTER: dict[str, str] = {
    **{c: NLU for c in ("nli", "commonsense", "sentiment", "paraphrase", "closed_book_qa",
                        "reading_comp", "reading_comp_with_cs", "coreference", "misc")},
    **{c: NLG for c in ("struct_to_text_nlg", "translation_nlg", "summarization_nlg")}}
# The original's `task_list` (65): every clustered task plus newsroom (commented out of its cluster).
FLAN_TASKS: tuple[str, ...] = tuple(t for ts in CLUSTERS.values() for t in ts) + ("newsroom",)
# The original's `test_tasks`, in its index order (--test_task 0..36).
TEST_TASKS: tuple[str, ...] = (
    "qnli", "story_cloze", "yelp_polarity_reviews", "stsb", "trivia_qa_full", "trivia_qa_wiki",
    "squad", "squad_v2", "record", "wsc273", "dart", "wmt16/ro-en", "coqa", "quac", "trec", "cola",
    "wic", "math_dataset", "fix_punct", "aeslc", "ag_news", "cnn_dailymail", "gigaword", "newsroom",
    "samsum", "xsum", "opin_idebate", "opin_movie", "bool_q", "winogrande", "snli", "copa",
    "common_gen", "wmt16/de-en", "mnli_matched", "mnli_mismatched", "dpr_raw")
BIGBENCH_TEST_TASKS: tuple[str, ...] = (
    "figure_of_speech_detection", "logical_deduction", "social_iqa", "strange_stories",
    "causal_judgment", "tracking_shuffled_objects_three", "tracking_shuffled_objects_five",
    "tracking_shuffled_objects_seven")
OTHER_TEST_TASKS: tuple[str, ...] = ("gsm8k",)
# Test tasks never put in any training mixture (make_mixtures.py), §2.4.
ALWAYS_DROPPED_FROM_MIXTURES: tuple[str, ...] = (
    "qnli", "story_cloze", "yelp_polarity_reviews", "stsb", "trivia_qa_full", "trivia_qa_wiki",
    "squad", "squad_v2", "record", "wsc273", "winogrande", "fix_punct", "dart", "wmt16/ro-en",
    "samsum")
# The paper's default mixture drops these clusters (and ALWAYS_DROPPED_FROM_MIXTURES).
DEFAULT_MIXTURE_DROPPED_CLUSTERS: tuple[str, ...] = ("misc", "summarization_nlg")
DEFAULT_MIXTURE: tuple[str, ...] = tuple(
    t for c, ts in CLUSTERS.items() if c not in DEFAULT_MIXTURE_DROPPED_CLUSTERS
    for t in ts if t not in ALWAYS_DROPPED_FROM_MIXTURES)
# Test tasks whose training data is in the default mixture (mnli_* are views of MNLI).
SEEN_VIA: dict[str, str] = {"mnli_matched": "mnli", "mnli_mismatched": "mnli"}


def all_tasks() -> tuple[Task, ...]:
    """Every registered task, in registration order."""
    return tuple(_REGISTRY.values())


def all_task_names() -> tuple[str, ...]:
    """Every registered task name, in registration order."""
    return tuple(_REGISTRY)


def get_task(name: str | Task) -> Task:
    """The task called `name` (a `Task` passes through); ValueError naming close matches."""
    if isinstance(name, Task):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown task {name!r}.{hint} Known tasks: see "
                         "t5x_like.data.tasks.all_tasks() or docs/tasks.md.") from None


def is_bigbench_style(task: str) -> bool:
    """BIG-bench tasks and GSM8K: the closed question format with quoted options, no FLAN template."""
    return task in BIGBENCH_TEST_TASKS or task in OTHER_TEST_TASKS


def is_seen_in(task: str, mixture: Sequence[str]) -> bool:
    """Whether `task`'s training data is part of `mixture` (mnli_* count as mnli)."""
    return SEEN_VIA.get(task, task) in mixture


# Fixes relative to the authors' code that change data (the `faithful` switch undoes them).
FIXES: tuple[str, ...] = (
    "cola, wic, copa: evaluated on the labelled validation split (the original used the unlabelled "
    "GLUE/SuperGLUE test split, where label -1 made every gold answer the last option).",
    "wic: label 1 (same sense) maps to 'True' (the original inverted it: 0 -> 'True').",
    "Rows with label -1 (unlabelled) are dropped (faithful: label -1 indexes the last option).",
    "opin_idebate, opin_movie, newsroom: the answer column is not a prompt field (the original's "
    "SampleGen / Gold-Pipeline blocks showed the gold answer before 'Answer Solution:').",
    "stsb: the 0-5 score is rounded half-up (the original floored it); the raw score is kept as "
    "the reference for Pearson/Spearman.",
    "squad, record, dart, web_nlg, trivia_qa_*: references hold every gold answer/alias (the "
    "original scored against the first one only).",
    "wsc273: the gold answer is the substituted sentence shown among the options (the original's "
    "gold was the bare candidate, which is never one of the shown options).",
    "snli: evaluated on validation (the original used test); wsc273, fix_punct, story_cloze, "
    "opin_*: no train split (the original reused the eval data for training / examples); gsm8k: "
    "in-context examples from train (the original used test).",
    "dpr_raw, coqa, quac, opin_*: real metrics (the original's simple_accuracy was always 0).",
)


def markdown_table(extra_columns: Mapping[str, Callable[[Task], str]] | None = None) -> str:
    """The docs table of every task; `extra_columns` (header -> cell function) extend it, e.g.
    with seen/held-out per mixture setup or local availability."""
    extra_columns = dict(extra_columns or {})
    header = ["task", "cluster", "category", "hub id / config", "train split", "eval split",
              "local dir", "tfds", "metric", "role", "default mixture", *extra_columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in all_tasks():
        src = task.source
        hub = (f"`{src.hub_id}`" + (f" / `{src.hub_config}`" if src.hub_config else "")
               if src.hub_id else "manual download")
        eval_split = src.eval_split or "–"
        if src.faithful_eval_split:
            eval_split += f" (faithful: {src.faithful_eval_split})"
        cells = [f"`{task.name}`", task.cluster or "–", task.category, hub, src.train_split or "–",
                 eval_split, f"`{src.local_dir}`", src.tfds_name or "–", task.metric,
                 task_role(task.name), _default_mixture_cell(task.name),
                 *(fn(task) for fn in extra_columns.values())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def task_role(name: str) -> str:
    """'train', 'test' or 'train+test' (the original's task_list / test lists)."""
    is_test = name in TEST_TASKS or name in BIGBENCH_TEST_TASKS or name in OTHER_TEST_TASKS
    is_train = name in FLAN_TASKS
    return "train+test" if is_train and is_test else ("test" if is_test else "train")


def _default_mixture_cell(name: str) -> str:
    """'in mixture' / 'seen' / 'held-out' / '–' for the docs table's default-mixture column."""
    if name in DEFAULT_MIXTURE:
        return "seen (test)" if task_role(name) == "train+test" else "in mixture"
    if name in SEEN_VIA and is_seen_in(name, DEFAULT_MIXTURE):
        return "seen (test)"
    return "held-out" if task_role(name) != "train" else "–"
