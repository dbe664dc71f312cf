"""The processing of one corpus, read → clean → dedup → tokenize → pack: the public API that preprocessing
and its growth (``growth``) both stand on.

Two stages overlap: while a worker thread tokenizes batch *i* (the fast tokenizer runs in Rust without
the GIL), the main thread reads, cleans and deduplicates batch *i + 1* and packs batch *i − 1*'s tokens.
Packing stays in stream order, so the output does not depend on the timing. Every held-out candidate
(``held_out``) stays out of training; a ``HeldOutSample`` keeps the ``val_max_docs`` smallest hashes.
"""

from __future__ import annotations

import copy
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer

from .clean import FilterReport, clean_stream
from .config import ExperimentParams, ModelParams
from .corpora import CorpusStream, open_corpus
from .corpora.register import RELAXED_QUALITY, register_quality
from .dedup import DedupReport, Deduplicator
from .documents import Document
from .errors import DataError
from .held_out import HeldItem, HeldOutSample, document_group, held_out_rank, is_held_out
from .modeling import load_tokenizer
from .packing import SequencePacker, replay_split_name
from .preprocess_report import removals, stage_label

DEDUP_LOG = "dedup.log"  # the dedup index as an append-only log (the preprocessing snapshot records its length)

MAX_CHARS_PER_PIECE = 50_000  # enormous documents are tokenized in pieces (bounded memory and time)


class PreprocessError(DataError, RuntimeError):
    """Preprocessing left nothing usable; the message names the corpus and the stage that removed it."""


def tokenize_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """Fast-tokenizer batch encoding; documents longer than ``MAX_CHARS_PER_PIECE`` are cut at
    whitespace into pieces whose token lists are concatenated."""
    pieces, owners = [], []
    for i, text in enumerate(texts):
        start = 0
        while start < len(text):
            end = min(len(text), start + MAX_CHARS_PER_PIECE)
            if end < len(text):
                cut = text.rfind(" ", start + MAX_CHARS_PER_PIECE // 2, end)
                end = cut if cut > start else end
            pieces.append(text[start:end])
            owners.append(i)
            start = end
    encoded = _encode(tokenizer, pieces) if pieces else []
    if owners == list(range(len(texts))):
        return encoded  # one piece per document (none cut, none empty): nothing to reassemble
    out: list[list[int]] = [[] for _ in texts]
    for owner, ids in zip(owners, encoded):
        out[owner].extend(ids)
    return out


_TEXT_ONLY: dict[int, tuple[object, object]] = {}


def _text_only_backend(tokenizer):
    """A copy of the Rust tokenizer that reads special-token strings as plain text: a document that
    merely *mentions* ``<|endoftext|>`` must not inject a document separator (tested)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if id(tokenizer) not in _TEXT_ONLY:
        copy = Tokenizer.from_str(backend.to_str())
        copy.encode_special_tokens = True
        _TEXT_ONLY[id(tokenizer)] = (tokenizer, copy)  # holds the tokenizer, so its id stays unique
    return _TEXT_ONLY[id(tokenizer)][1]


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, from the Rust tokenizer directly where there is one: the same ids as
    ``tokenizer(texts, split_special_tokens=True)`` (tested), ~20% faster, because offsets and
    attention masks are not built."""
    backend = _text_only_backend(tokenizer)
    if backend is not None:
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]



_TOKENIZERS: dict[str, object] = {}


def load_tokenizer_once(spec: ModelParams):
    """The model's tokenizer, loaded once per process (a reload costs ~0.2 s; notebooks re-run cells)."""
    key = spec.model_dump_json()
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(spec)
    return _TOKENIZERS[key]


# --------------------------------------------------------------------------------------- reporting
def batched(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _unreadable_text(unreadable: dict) -> str:
    where = unreadable.get("where_by_reason", {})
    parts = [f"{n} × {reason}" + (f" (e.g. {', '.join(where[reason])})" if where.get(reason) else "")
             for reason, n in unreadable.get("by_reason", {}).items()]
    return "; ".join(parts)


def _removed_text(filters: dict, dedup: dict) -> str:
    """'all removed by X' for one stage; 'N by X, M by Y' for several (each naming its parameter)."""
    stages = [(stage, n) for stage, n in removals(filters, dedup) if n]
    if len(stages) == 1:
        stage, _ = stages[0]
        ex = filters.get("examples", {}).get(stage, [{}])[0].get("reason")
        return f"by {stage_label(stage)}" + (f", e.g. {ex}" if ex else "")
    return ": " + ", ".join(f"{n} by {stage_label(stage)}" for stage, n in stages)


def nothing_left_error(which: str, filters: FilterReport, dedup: DedupReport, unreadable: dict,
                        description: str) -> PreprocessError:
    f, d = filters.as_dict(), dedup.as_dict()
    if filters.seen == 0:
        if unreadable.get("total"):
            return PreprocessError(f"data.{which}: no readable document in {description}: "
                                   f"{unreadable['total']} unreadable record(s): {_unreadable_text(unreadable)}")
        return PreprocessError(f"data.{which}: the corpus yielded no documents ({description}: empty?)")
    across = (" (duplicates are found across both corpora: a general document repeating a domain one is removed)"
              if which == "general" and (d["exact_removed"] or d["near_removed"]) else "")
    return PreprocessError(f"data.{which}: all {filters.seen} documents were removed {_removed_text(f, d)}"
                           f"{across}; relax or disable that stage to keep some")


# ------------------------------------------------------------------------------- one streamed corpus
Assigned = list[tuple[Document, "SequencePacker | tuple[int, int]"]]  # each document and where it goes


def process_corpus(which: str, params: ExperimentParams, tokenizer, separator: int, dedup: Deduplicator,
                   train: SequencePacker, val: SequencePacker, progress: bool,
                   resume: dict | None = None, save: Callable[[dict], None] | None = None) -> dict:
    """Stream one corpus (``data.<which>``) into its training (or replay) packer and its held-out sample.

    A document whose hash falls in ``preprocess.val_fraction`` is a held-out candidate: never trained on,
    offered to a ``HeldOutSample`` (its token ids buffered, cut to ``val_doc_tokens``) that keeps the
    ``val_max_docs`` smallest hashes; they are packed into ``val`` (padded tail) when the stream ends.
    Reading stops once the training budget is full and ``val_max_docs`` candidates were seen. A frozen
    ``val`` (growth: ``full``) keeps nothing new, and its candidates still stay out of training.

    Each time the training packer completes a shard, the pipeline is drained (the batch in flight is
    packed too) and ``save`` receives this corpus's place: the stream position, the reports, the
    candidate count and the sample. ``resume`` (such a place) continues from there instead of from the start.
    """
    run = CorpusPass(which, params, train, val, resume)
    pre = params.preprocess
    docs = dedup.stream(clean_stream(run.corpus, pre.quality, run.filters, normalise=pre.normalize), run.dd)
    if progress:
        run.open_progress_bar()
    whole = run.read(docs, tokenizer, save)
    if run.bar is not None:
        run.bar.close()
    return run.finish(whole)


class CorpusPass:
    """One pass of a corpus into its packers: the reports, the held-out sample and the counts that
    deciding, packing and saving a place share."""

    def __init__(self, which: str, params: ExperimentParams, train: SequencePacker, val: SequencePacker,
                 resume: dict | None = None):
        pre = self.pre = params.preprocess
        self.which, self.seed, self.train, self.val = which, params.seed, train, val
        self.spec = getattr(params.data, which)
        base = Path(params.source_path).parent if params.source_path else None
        self.corpus: CorpusStream = open_corpus(self.spec, base_dir=base, name=which, seed=params.seed)
        self.filters, self.dd = FilterReport(), DedupReport()
        self.sample = HeldOutSample(pre.val_max_docs)
        self.tokens = 0
        self.trained: Counter = Counter()  # documents packed into training, by topic or source
        if resume is not None:
            self.corpus.resume_from(resume["stream"])
            self.filters, self.dd, self.tokens = resume["filters"], resume["dedup"], resume["tokens"]
            self.sample = copy.deepcopy(resume.get("sample")) or HeldOutSample(pre.val_max_docs, resume["held_out"])
            self.trained = Counter(resume.get("trained", {}))
        self.frozen = val.full  # growth: the held-out set is fixed
        self.bar = None

    def open_progress_bar(self) -> None:
        from tqdm.auto import tqdm  # lazy: a progress bar only where one is shown

        self.bar = tqdm(desc=f"{self.which}: packing", unit=" tok", unit_scale=True, mininterval=2.0,
                        initial=self.tokens)

    def read(self, docs: Iterable[Document], tokenizer, save: Callable[[dict], None] | None) -> bool:
        """Tokenize (a worker thread) and pack the stream; True when it was read to its end (or to
        ``data.<which>.max_docs``), False when the budget and the held-out cap stopped it first."""
        val_cap = self.pre.val_max_docs if self.pre.val_max_docs is not None else float("inf")
        shards_saved = len(self.train.writer.shards)
        whole = True
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:
            pending = None
            for batch in batched(docs, self.pre.tokenize_batch_size):
                chosen = self.assign(batch)
                encoded = pool.submit(tokenize_batch, tokenizer, [d.text for d, _ in chosen])
                if pending is not None:
                    self.tokens += self.pack(*pending)
                pending = (chosen, encoded)
                new_shard = len(self.train.writer.shards) > shards_saved
                if new_shard:
                    self.tokens += self.pack(*pending)  # drained: everything read so far is packed
                    pending, shards_saved = None, len(self.train.writer.shards)
                if self.train.full and (self.frozen or self.sample.candidates >= val_cap):
                    whole = False
                    break  # budget reached and the held-out sample has its cap of candidates: stop reading
                if new_shard and save is not None:
                    save(self.place())
            if pending is not None:
                self.tokens += self.pack(*pending)
        return whole

    def assign(self, batch: list[Document]) -> Assigned:
        """Each document's destination: the train packer, or the held-out sample as (rank, candidate index)."""
        chosen = []
        for doc in batch:
            if is_held_out(doc.id, self.seed, self.pre.val_fraction):
                self.sample.count()
                rank = held_out_rank(doc.id, self.seed)
                if not self.frozen and self.sample.would_keep(rank):
                    chosen.append((doc, (rank, self.sample.candidates)))
            elif not self.train.full:
                chosen.append((doc, self.train))
        return chosen

    def pack(self, chosen: Assigned, encoded: Future) -> int:
        """Pack one tokenized batch (held-out candidates into the sample); the tokens it added."""
        added = 0
        for (doc, into), ids in zip(chosen, encoded.result()):
            if isinstance(into, tuple):
                cut = ids if self.pre.val_doc_tokens is None else ids[: self.pre.val_doc_tokens]
                self.sample.offer(HeldItem(*into, doc.id, doc.source, document_group(doc), np.asarray(cut, np.uint32)))
                added += len(ids) + 1
            elif not into.full:
                into.add(ids, doc.id, doc.source)
                self.trained[document_group(doc)] += 1
                added += len(ids) + 1
        if self.bar is not None:
            self.bar.update(added)
        return added

    def place(self) -> dict:
        """Where this corpus stands: what a snapshot saves and a resumed pass (or growth) continues from."""
        return {"which": self.which, "stream": self.corpus.state_dict(), "filters": self.filters, "dedup": self.dd,
                "held_out": self.sample.candidates, "tokens": self.tokens, "sample": copy.deepcopy(self.sample),
                "trained": dict(self.trained)}

    def finish(self, whole: bool) -> dict:
        """Pack the held-out sample into ``val`` and report the corpus (``_place``: for growth, not the manifest)."""
        held = self.sample.kept()
        if not self.frozen:
            for item in held:
                self.val.add(item.payload, item.doc_id, item.source)
        corpus = self.corpus
        if self.filters.kept == 0 or (self.train.documents + len(held)) == 0:
            raise nothing_left_error(self.which, self.filters, self.dd, corpus.problems.as_dict(), corpus.describe())
        out = {"source": self.spec.model_dump(mode="json"), "description": corpus.describe(),
               "unreadable": corpus.problems.as_dict(), "filters": self.filters.as_dict(), "dedup": self.dd.as_dict(),
               "tokens_tokenized": self.tokens, "documents_read": corpus.documents_read,
               "trained_composition": dict(self.trained.most_common()),
               # where the stream stopped: how a larger train budget continues it (cpt_utils.growth; not in the manifest)
               "_place": {**self.place(), "sample": None}}  # the sample is packed: growth keeps it frozen
        if not self.frozen:
            order = "a seeded random permutation of the file" if corpus.permuted else "the source's own order"
            out["held_out"] = self.sample.report(corpus.documents_read, whole, order)
        return out


# ---------------------------------------------------------------------------------------- a register
def process_register(name: str, params: ExperimentParams, tokenizer, dedup: Deduplicator,
                      val: SequencePacker, control: SequencePacker | None = None,
                      replay: SequencePacker | None = None) -> dict:
    """Pack one register (``data.registers.<name>``) into its own held-out split ``val_<name>``.

    The whole register is cleaned (with ``corpora.register.register_quality``: filters that reject the
    register's ordinary text are off) and deduplicated against everything before it, then the
    ``preprocess.val_max_docs`` documents with the smallest hash of (seed, id) are kept (``HeldOutSample``,
    packed in hash order): a fixed, reproducible sample spread over the register, not its first files.
    Instruction pairs rendered with the chat template are encoded with their template tokens as special
    tokens. ``control``: when this register is the control run's text, the documents *not* held out are
    packed into it (stream order).
    ``replay``: likewise when a replay mixture draws from it (``replay_<name>``, up to
    ``preprocess.replay_token_budget``). Neither changes which documents are held out.
    """
    pre, spec = params.preprocess, params.data.registers[name]
    quality = register_quality(spec.register, pre.quality) if spec.kind == "packaged_register" else pre.quality
    corpus = open_corpus(spec, base_dir=Path(params.source_path).parent if params.source_path else None,
                         name=f"registers.{name}", tokenizer=tokenizer, seed=params.seed)
    filters, dd = FilterReport(), DedupReport()
    sample = HeldOutSample(pre.val_max_docs)  # every document is a candidate: registers are small
    everything: list[Document] = []  # only kept when the register also feeds the control or a replay split
    for order, doc in enumerate(dedup.stream(clean_stream(corpus, quality, filters, normalise=pre.normalize), dd)):
        if control is not None or replay is not None:
            everything.append(doc)
        sample.count()
        rank = held_out_rank(doc.id, params.seed)
        sample.offer(HeldItem(rank, order, doc.id, doc.source, document_group(doc), doc))
    docs = [item.payload for item in sample.kept()]
    if not docs:
        raise PreprocessError(
            f"data.registers.{name}: no document left ({corpus.documents_read} read, "
            f"{corpus.problems.total} unreadable, {filters.seen - filters.kept} removed by filters "
            f"{dict(filters.removed)}, {dd.exact_removed + dd.near_removed} duplicates)")
    pack_documents(tokenizer, docs, val)
    held = {doc.id for doc in docs}
    rest = [doc for doc in everything if doc.id not in held]  # by id: a repeated id is never trained on
    for packer in (control, replay):
        for batch in batched(rest, pre.tokenize_batch_size):
            if packer is None or packer.full:
                break
            pack_documents(tokenizer, batch, packer)
    info = {"source": spec.model_dump(mode="json"), "description": corpus.describe(),
            "relaxed_filters": sorted(RELAXED_QUALITY.get(getattr(spec, "register", ""), {})),
            "unreadable": corpus.problems.as_dict(), "filters": filters.as_dict(), "dedup": dd.as_dict(),
            "documents_read": corpus.documents_read, "documents_selected": len(docs),
            "chat_template": any(d.meta.get("special_tokens") for d in docs),
            "held_out": sample.report(corpus.documents_read, True, "the source's own order")}
    if replay is not None:
        info["replay"] = {"split": replay_split_name(name), "documents_eligible": len(rest),
                          "documents_packed": replay.documents, "held_out_documents_excluded": len(held),
                          "token_budget": pre.replay_token_budget}
    return info


def pack_documents(tokenizer, docs: list[Document], packer: SequencePacker) -> None:
    """Tokenize and pack ``docs`` in order; chat-template documents keep their template tokens special."""
    special = [d for d in docs if d.meta.get("special_tokens")]
    plain = tokenize_batch(tokenizer, [d.text for d in docs if not d.meta.get("special_tokens")])
    templated = tokenizer([d.text for d in special], add_special_tokens=False)["input_ids"] if special else []
    plain_it, templated_it = iter(plain), iter(templated)
    for doc in docs:
        packer.add(next(templated_it) if doc.meta.get("special_tokens") else next(plain_it), doc.id, doc.source)
