"""Tokenization with the real Llama-2 / Mistral tokenizers (checked against sentencepiece and by hand)
and the SmolLM2 one: loading, explicit BOS and pad, lm-eval request encoding, vocab checks."""
from __future__ import annotations

import pytest

from t5x_like.tokenization import TokenizerMismatchError, load_tokenizer

SPM_TOKENIZERS = ["llama2", "mistral"]
TEXTS = ["Hello world", " Paris", "  two spaces", "naïve café 日本語 😀", "def f(x):\n    return x ** 2\n",
         "1234567 + 89 = ?", "tab\there\r\n", "<s>literal specials</s>"]


@pytest.fixture(scope="module", params=SPM_TOKENIZERS)
def spm_pair(request, tokenizers_dir):
    """(our Tokenizer, the sentencepiece processor of the same model)."""
    spm = pytest.importorskip("sentencepiece")
    directory = tokenizers_dir / request.param
    return load_tokenizer(directory), spm.SentencePieceProcessor(model_file=str(directory / "tokenizer.model"))


def pieces(tokenizer, ids):
    return tokenizer.hf.convert_ids_to_tokens(ids)


def test_encode_matches_sentencepiece_with_one_bos(spm_pair):
    tokenizer, sp = spm_pair
    assert tokenizer.add_bos and tokenizer.bos_id == sp.bos_id() == 1
    for text in TEXTS[:-1]:
        assert tokenizer.encode(text) == [sp.bos_id(), *sp.encode(text)], text
        assert tokenizer.encode(text, add_bos=False) == sp.encode(text)
        assert tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True) == sp.decode(sp.encode(text))


def test_literal_special_tokens_stay_special(spm_pair):
    # The authors' prompts contain a literal "<s>": it maps to BOS, next to the one we add (double BOS).
    tokenizer, _ = spm_pair
    ids = tokenizer.encode("<s>literal specials</s>")
    assert ids[:2] == [1, 1] and ids[-1] == tokenizer.eos_id == 2


def test_pad_id_falls_back_to_eos(spm_pair):
    tokenizer, _ = spm_pair
    assert tokenizer.hf.pad_token_id is None and tokenizer.pad_id == tokenizer.eos_id == 2


def test_add_bos_is_ours_to_decide(tokenizers_dir):
    tokenizer = load_tokenizer(tokenizers_dir / "llama2", add_bos=False)
    assert not tokenizer.add_bos and tokenizer.encode("Hello") == [15043]
    assert tokenizer.encode_pair("Hello", " world")[0] == [15043]


def test_encode_pair_moves_trailing_space_to_continuation(spm_pair):
    tokenizer, sp = spm_pair
    context, continuation = tokenizer.encode_pair("Question: What is the capital of France? Answer: ", "Paris")
    assert pieces(tokenizer, continuation) == ["▁Paris"]
    assert context == [1, *sp.encode("Question: What is the capital of France? Answer:")]  # no trailing "▁"
    assert context.count(1) == 1 and 1 not in continuation


def test_encode_pair_continuation_starting_with_space(spm_pair):
    tokenizer, _ = spm_pair
    context, continuation = tokenizer.encode_pair("The cat", " sat")
    assert pieces(tokenizer, context) == ["<s>", "▁The", "▁cat"]
    assert pieces(tokenizer, continuation) == ["▁sat"]
    _, two_spaces = tokenizer.encode_pair("The cat ", " sat")  # context space + continuation space
    assert pieces(tokenizer, two_spaces) == ["▁", "▁sat"]


def test_encode_pair_merge_across_the_boundary(spm_pair):
    # "foot" + "balls" is encoded jointly as "▁football" + "s": the continuation keeps only "s"
    # and the context keeps its own encoding "▁foot" (lm-eval's split at len(encode(context))).
    tokenizer, _ = spm_pair
    context, continuation = tokenizer.encode_pair("I like foot", "balls")
    assert pieces(tokenizer, context) == ["<s>", "▁I", "▁like", "▁foot"]
    assert pieces(tokenizer, continuation) == ["s"]
    with pytest.raises(ValueError, match="merges entirely into the last token"):
        tokenizer.encode_pair("I like foot", "ball")  # jointly one token "▁football": nothing to score


def test_encode_pair_equals_joint_sentencepiece_encoding(spm_pair):
    tokenizer, sp = spm_pair
    pairs = [("Q: 2+2=? A:", " 4"), ("Translate to French: cheese =>", " fromage"), ("Premise:\n", "Yes"),
             ("Options: (A) red (B) blue\nAnswer: (", "B)")]
    for context, continuation in pairs:
        context_ids, continuation_ids = tokenizer.encode_pair(context, continuation)
        stripped = context.rstrip()
        assert context_ids + continuation_ids == [1, *sp.encode(stripped + context[len(stripped):] + continuation)]


def test_encode_pair_empty_context_and_continuation(spm_pair):
    tokenizer, _ = spm_pair
    assert tokenizer.encode_pair("", "Hello") == ([1], [tokenizer.encode("Hello", add_bos=False)[0]])
    with pytest.raises(ValueError, match="empty continuation"):
        tokenizer.encode_pair("Question:", "")


def test_smollm2_tokenizer(smollm2_dir):
    tokenizer = load_tokenizer(smollm2_dir)
    assert (tokenizer.add_bos, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.vocab_size) == (False, 1, 2, 2, 49152)
    context, continuation = tokenizer.encode_pair("Answer: ", "Paris")
    assert pieces(tokenizer, context) == ["Answer", ":"] and pieces(tokenizer, continuation) == ["ĠParis"]
    # Byte-level BPE merges across the boundary: " unbelie" + "vable" jointly, " un" alone.
    context, continuation = tokenizer.encode_pair("The answer is un", "believable")
    assert pieces(tokenizer, context)[-1] == "Ġun" and pieces(tokenizer, continuation) == ["vable"]
    assert tokenizer.encode_pair("", "Hi")[0] == [1]  # lm-eval prefix token: BOS even without add_bos


def test_vocab_must_fit_the_embedding(tokenizers_dir):
    tokenizer = load_tokenizer(tokenizers_dir / "mistral")
    tokenizer.check_matches_model(32000)
    tokenizer.check_matches_model(32064)  # padded embedding rows are fine
    with pytest.raises(TokenizerMismatchError, match=r"tokenizer .*mistral has 32000 tokens but the model's embedding has 31999 rows"):
        tokenizer.check_matches_model(31999)


def test_missing_or_empty_tokenizer_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found: .*absent"):
        load_tokenizer(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path} has no tokenizer \(tokenizer.json or tokenizer.model\)"):
        load_tokenizer(tmp_path)  # named without transformers' misleading "install sentencepiece" text
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(FileNotFoundError, match=f"no loadable tokenizer in {tmp_path}"):
        load_tokenizer(tmp_path)
