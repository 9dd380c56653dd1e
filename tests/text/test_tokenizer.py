"""Tokenizer ids identical to transformers.BertTokenizer; answer tables and normalisation."""

import random

import pytest

from lxmert.text import AnswerTable, LxmertTokenizer, normalize_answer, packaged_vocab_path

WORDS = ("a the man woman dog's cafés naïve résumé Zoë über jalapeño piñata 3,000 12.5 1st 2nd "
         "COVID-19 don't isn't ¿qué? ¡hola! — – … \"quoted\" (paren) [bracket] {brace} e-mail "
         "antidisestablishmentarianism supercalifragilisticexpialidocious pneumonoultramicroscopic "
         "what's in the picture? how many giraffes are there Is THE Frisbee red/blue 9:30pm $5 50% "
         "中文 日本語 emoji🙂 tab\there new\nline x" + "y" * 120).split(" ")


def sentences(n=3000, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        yield " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))


def test_ids_match_bert_tokenizer_on_thousands_of_sentences():
    transformers = pytest.importorskip("transformers")
    ref = transformers.BertTokenizer(str(packaged_vocab_path()), do_lower_case=True)
    ours = LxmertTokenizer.from_vocab()
    texts = list(sentences())
    batch = ours.encode_batch(texts, max_length=20)
    for text, ids in zip(texts, batch):
        expected = ref(text, truncation=True, max_length=20)["input_ids"]
        assert ids == expected, text
        assert len(ids) <= 20 and ids[0] == 101 and ids[-1] == 102
    # untruncated too
    for text in texts[:500]:
        assert ours.encode(text, max_length=None) == ref(text)["input_ids"], text


def test_batch_call_pads_dynamically():
    tok = LxmertTokenizer.from_vocab()
    out = tok(["a cat", "what colour is the big cube on the left?"])
    assert out["input_ids"].shape[1] == max(len(tok.encode(t)) for t in ["a cat", "what colour is the big cube on the left?"])
    assert out["attention_mask"].sum(1).tolist() == [4, out["input_ids"].shape[1]]
    assert (out["input_ids"][0, 4:] == 0).all() and (out["token_type_ids"] == 0).all()
    assert tok(["x " * 50], max_length=20)["input_ids"].shape == (1, 20)


def test_tokenizer_from_checkpoint_dir_and_save(tmp_path):
    tok = LxmertTokenizer.from_vocab()
    tok.save_pretrained(tmp_path)
    again = LxmertTokenizer.from_vocab(tmp_path)
    assert again.vocab == tok.vocab
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(ValueError, match="lacks"):
        LxmertTokenizer.from_vocab(tmp_path / "bad" / "vocab.txt")


@pytest.mark.parametrize("raw,norm", [("Two", "2"), ("The man.", "man"), ("a woman", "woman"),
                                      ("grey", "gray"), ("an apple", "apple"), ("", ""), ("yes", "yes")])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_answer_tables_of_the_release():
    assert len(AnswerTable.from_name("vqa")) == 3129
    assert len(AnswerTable.from_name("gqa")) == 1842
    table = AnswerTable.from_name("pretrain")
    assert len(table) == 9500 and table.index(table.answer(17)) == 17
    with pytest.raises(KeyError, match="not in the answer table"):
        table.index("definitely not an answer")
