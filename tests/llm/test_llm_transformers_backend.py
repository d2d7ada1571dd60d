"""The in-process transformers backend end to end, with a tiny GPT-2 built here (nothing downloaded)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from rove.llm.backends import TransformersBackend, make_backend  # noqa: E402
from rove.llm.judge import judge_captions, judge_pairs  # noqa: E402
from rove.llm.store import AnnotationStore  # noqa: E402

# No "best", "description", "helpful", "yes": the random model cannot spell a valid answer by chance.
WORDS = [
    "the",
    "a",
    "you",
    "see",
    "kill",
    "rat",
    "gold",
    "stairs",
    "door",
    "dark",
    "it",
    "is",
    "and",
    "of",
    "to",
    "in",
    "on",
    "hit",
    "miss",
    "eat",
    "food",
    "wall",
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = {"[UNK]": 0, "[PAD]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    fast.save_pretrained(path)
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=2048, n_embd=16, n_layer=2, n_head=2, bos_token_id=2, eos_token_id=2
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def test_garbage_answers_are_recorded_unknown_after_one_retry(tiny_model_dir, tmp_path):
    backend = make_backend({"type": "transformers", "path": str(tiny_model_dir), "max_new_tokens": 6, "batch_size": 2})
    assert isinstance(backend, TransformersBackend)
    calls = []
    real_complete = backend.complete

    def counting(conversations):
        calls.append(len(conversations))
        return real_complete(conversations)

    backend.complete = counting  # type: ignore[method-assign]
    pairs = [("You see gold.", "You hit the rat."), ("It is dark.", "The door is locked.")]
    results = judge_pairs(backend, pairs)
    assert calls == [2, 2]  # one batch of first turns, one batch of retry turns
    assert all(r.label is None and r.retried for r in results)
    store = AnnotationStore(tmp_path / "s.db")
    store.add_pairs(pairs)
    store.record_pairs((a, b, j) for (a, b), j in zip(pairs, results, strict=True))
    assert store.pair_counts() == {"pending": 0, "done": 0, "unknown": 2, "failed": 0}
    assert store.answered_pairs() == []  # unknowns never appear as labels
    assert [r.label for r in judge_captions(backend, ["You see gold."])] == [None]


def test_plain_prompt_format_without_chat_template(tiny_model_dir):
    backend = TransformersBackend(tiny_model_dir, max_new_tokens=2)
    text = backend.format([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    assert text.startswith("System: s") and text.endswith("Assistant:")
    answers = backend.complete([[{"role": "user", "content": "you see gold"}]])
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransformersBackend(tmp_path / "nope")


def test_chat_template_text_gets_no_second_bos(tmp_path):
    # A Llama-style tokenizer adds BOS itself, and its chat template writes BOS too: encode once.
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, "[EOS]": 2, "[BOS]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 3)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]", bos_token="[BOS]"
    )
    fast.chat_template = "[BOS] {% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(tmp_path)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=256, n_embd=16, n_layer=1, n_head=2)).save_pretrained(
        tmp_path
    )
    backend = TransformersBackend(tmp_path, max_new_tokens=2, temperature=0)
    ids = backend.encode([backend.format([{"role": "user", "content": "you see gold"}])])["input_ids"][0].tolist()
    assert ids.count(3) == 1 and ids[0] == 3
    assert backend.complete([[{"role": "user", "content": "you see gold"}]])[0] is not None


def test_generation_errors_are_backend_errors(tiny_model_dir):
    from rove.llm.backends import BackendError

    backend = TransformersBackend(tiny_model_dir, max_new_tokens=2)

    def boom(**kwargs):
        raise RuntimeError("CUDA out of memory")

    backend.model.generate = boom
    with pytest.raises(BackendError, match="out of memory"):
        backend.complete([[{"role": "user", "content": "you see gold"}]])
    assert (backend.temperature, backend.top_p, backend.top_k, backend.max_new_tokens) == (0.1, 0.95, 50, 2)
