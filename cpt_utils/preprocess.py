"""Preprocessing, source to shards in one streaming pass: clean → filter → dedup → split → tokenize → pack.

Nothing holds the corpus: documents flow through generators, are tokenized a batch at a time (in a
worker thread, overlapping the cleaning of the next batch) and packed straight into shards, so peak
memory is the batch, one shard buffer per split (``preprocess.shard_tokens``) and the dedup index
(≈ 0.7 KB per kept document, the only part that grows with the corpus) and the held-out samples. The
held-out split is decided per *document* (a hash of seed and id), before packing, so no sequence can mix
training and validation text: every candidate (hash in ``val_fraction``) stays out of training, and the
``val_max_docs`` with the smallest hash form the held-out set (``HeldOutSample``, a uniform random
sample of the candidates read whatever the stream's order), packed when the stream ends with its last
sequence padded. ``manifest.json`` is written last; its ``held_out`` section says what each set is a
sample of (composition, candidates, whether the whole stream was read); its fingerprint lets training
refuse mismatched data and lets a re-run skip the whole step.

Replay: the general corpus's non-held-out documents fill ``replay``; every register that a
``train.replay_mixture`` of the main parameters or of any variant names also gets ``replay_<name>``,
packed from the register's documents that are not in its held-out ``val_<name>`` (``replay_sources``),
so variants can change the mixture on the same data. Prepared data missing a named source are prepared
again, and their content hash then covers that split too (runs trained on the old data retrain).

An interrupted run resumes: after each train (or replay) shard the pipeline is drained and a snapshot
(``data/resume.pkl``, written atomically) records the stream position, the filter/dedup/unreadable
reports, the held-out sample (its candidates' token ids), every packer's buffered fragments, unfinished shard rows and
``documents.jsonl`` length, and the length of the dedup log (``data/dedup.log``, the index as an
append-only log, so a snapshot never rewrites it). The next ``prepare_data`` with the same fingerprint,
code and input files continues after that shard, re-verifying the shards already written by content
hash; anything else starts over. Measured on the tiny corpus: the snapshot is 2–26 KB (mostly the
held-out buffers; at paper scale ≈ one tokenizer batch plus the held-out sets, ~10–20 MB, overwritten);
the log grows by ≈ 235 bytes per document (≈ 120 MB for the 400M-token setting, appended once).
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import json
import pickle
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .clean import FilterReport, clean_stream
from .corpora import Document, open_corpus
from . import growth
from .dedup import DedupReport, Deduplicator
from .errors import DataError
from .packing import SPLITS, PackedDataError, SequencePacker, ShardWriter, replay_split_name, verify_split
from .config import GENERAL_SOURCE, ExperimentParams, ModelParams, load_params, replay_sources, step_fingerprint
from .preprocess_report import drop_summary, held_out_lines, removals, stage_label

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
    from tokenizers import Tokenizer

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


def is_held_out(doc_id: str, seed: int, fraction: float) -> bool:
    """Deterministic document-level split: the same document is a held-out candidate on every run."""
    return held_out_rank(doc_id, seed) / 2**64 < fraction


def held_out_rank(doc_id: str, seed: int) -> int:
    """The document's 64-bit hash of (seed, id): below ``fraction · 2^64`` it is a held-out candidate, and
    the smallest ones are kept (``HeldOutSample``). The same hash as ``is_held_out``."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest(), "big")


MIN_HELD_OUT_DOCUMENTS = 20  # below this a document-clustered SE is unreliable: the manifest says so


def document_group(doc: Document) -> str:
    """What a held-out set's composition counts: the topic (packaged Wikipedia), the work (fiction), else
    the source (file, dataset or register)."""
    return str(doc.meta.get("topic") or doc.meta.get("work") or doc.source)


@dataclass(order=True)
class HeldItem:
    """One kept candidate; ``payload`` is its token ids (domain, general) or the document (registers)."""

    rank: int
    order: int
    doc_id: str = field(compare=False)
    source: str = field(compare=False)
    group: str = field(compare=False)
    payload: object = field(compare=False, repr=False)


@dataclass
class HeldOutSample:
    """A bottom-k sample: of every candidate offered (a document whose hash of (seed, id) fell in the
    held-out fraction), the ``cap`` with the smallest hash are kept. The hash is independent of the
    document's place in the stream, so the set is a uniform random sample of the candidates read, the
    same whatever their order (the first ``cap`` in stream order would be the stream's first topic).
    Candidates not kept are never trained on either. Picklable: the preprocessing snapshot holds it."""

    cap: int | None
    candidates: int = 0
    heap: list[tuple[int, int, HeldItem]] = field(default_factory=list)  # max-heap by rank (negated)

    def would_keep(self, rank: int) -> bool:
        """Whether a candidate of this rank would be kept now (a rejected one never is later: the
        threshold only falls), so a candidate can be rejected before it is tokenized."""
        return self.cap is None or len(self.heap) < self.cap or rank < -self.heap[0][0]

    def count(self) -> None:
        """A candidate was read (kept or not)."""
        self.candidates += 1

    def offer(self, item: HeldItem) -> None:
        """Keep ``item`` if it is among the ``cap`` smallest ranks so far (it was counted already)."""
        entry = (-item.rank, -item.order, item)
        if self.cap is None or len(self.heap) < self.cap:
            heapq.heappush(self.heap, entry)
        elif item.rank < -self.heap[0][0]:
            heapq.heapreplace(self.heap, entry)

    def kept(self) -> list[HeldItem]:
        """The kept candidates by rank: the packing order, so the split does not depend on stream order."""
        return sorted(item for _, _, item in self.heap)

    def report(self, documents_read: int, whole_stream_read: bool, ordered_by: str) -> dict:
        """The manifest's ``held_out`` entry (without the split's padding, added when it is packed)."""
        kept = self.kept()
        by = Counter(item.group for item in kept)
        return {"documents": len(kept), "composition": dict(by.most_common()),
                "candidates_seen": self.candidates, "cap": self.cap, "documents_read": documents_read,
                "whole_stream_read": whole_stream_read, "stream_order": ordered_by,
                "corpus_had_fewer": self.cap is not None and self.candidates < self.cap,
                "too_few_for_se": len(kept) < MIN_HELD_OUT_DOCUMENTS,
                "how": (f"the {len(kept)} of {self.candidates} held-out candidates with the smallest hash of "
                        f"(seed, id) among the {documents_read} documents read"
                        + ("" if whole_stream_read else " (the stream was not read to its end)"))}


def _batched(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
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


def _nothing_left_error(which: str, filters: FilterReport, dedup: DedupReport, unreadable: dict,
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


def _process_corpus(which: str, params: ExperimentParams, tokenizer, separator: int, dedup: Deduplicator,
                    train: SequencePacker, val: SequencePacker, progress: bool,
                    resume: dict | None = None, save: Callable[[dict], None] | None = None) -> dict:
    """Stream one corpus into its training (or replay) packer and its held-out sample.

    Two stages overlap: while a worker thread tokenizes batch *i* (the fast tokenizer runs in Rust
    without the GIL), the main thread reads, cleans and deduplicates batch *i + 1* and packs batch
    *i − 1*'s tokens. Packing stays in stream order, so the output does not depend on the timing.

    A document whose hash falls in ``preprocess.val_fraction`` is a held-out candidate: never trained on,
    offered to a ``HeldOutSample`` (its token ids buffered, cut to ``val_doc_tokens``) that keeps the
    ``val_max_docs`` smallest hashes; they are packed into ``val`` (padded tail) when the stream ends.
    Reading stops once the training budget is full and ``val_max_docs`` candidates were seen. A frozen
    ``val`` (growth: ``full``) keeps nothing new, and its candidates still stay out of training.

    Each time the training packer completes a shard, the pipeline is drained (the batch in flight is
    packed too) and ``save`` receives this corpus's place: the stream position, the reports, the
    candidate count and the sample. ``resume`` (such a place) continues from there instead of from the start.
    """
    pre = params.preprocess
    spec = getattr(params.data, which)
    base = Path(params.source_path).parent if params.source_path else None
    corpus = open_corpus(spec, base_dir=base, name=which, seed=params.seed)
    filters, dd = FilterReport(), DedupReport()
    sample = HeldOutSample(pre.val_max_docs)
    tokens = 0
    trained: Counter = Counter()  # documents packed into training, by topic or source
    if resume is not None:
        corpus.resume_from(resume["stream"])
        filters, dd, tokens = resume["filters"], resume["dedup"], resume["tokens"]
        sample = copy.deepcopy(resume.get("sample")) or HeldOutSample(pre.val_max_docs, resume["held_out"])
        trained = Counter(resume.get("trained", {}))
    docs = dedup.stream(clean_stream(corpus, pre.quality, filters, normalise=pre.normalize), dd)
    frozen = val.full  # growth: the held-out set is fixed
    val_cap = pre.val_max_docs if pre.val_max_docs is not None else float("inf")
    shards_saved = len(train.writer.shards)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"{which}: packing", unit=" tok", unit_scale=True, mininterval=2.0, initial=tokens)

    def assign(batch: list[Document]) -> list[tuple[Document, SequencePacker | tuple[int, int]]]:
        """Each document's destination: the train packer, or the held-out sample as (rank, candidate index)."""
        chosen = []
        for doc in batch:
            if is_held_out(doc.id, params.seed, pre.val_fraction):
                sample.count()
                rank = held_out_rank(doc.id, params.seed)
                if not frozen and sample.would_keep(rank):
                    chosen.append((doc, (rank, sample.candidates)))
            elif not train.full:
                chosen.append((doc, train))
        return chosen

    def pack(chosen: list[tuple[Document, SequencePacker | tuple[int, int]]], encoded: Future) -> int:
        added = 0
        for (doc, into), ids in zip(chosen, encoded.result()):
            if isinstance(into, tuple):
                cut = ids if pre.val_doc_tokens is None else ids[: pre.val_doc_tokens]
                sample.offer(HeldItem(*into, doc.id, doc.source, document_group(doc), np.asarray(cut, np.uint32)))
                added += len(ids) + 1
            elif not into.full:
                into.add(ids, doc.id, doc.source)
                trained[document_group(doc)] += 1
                added += len(ids) + 1
        if bar is not None:
            bar.update(added)
        return added

    def place() -> dict:
        return {"which": which, "stream": corpus.state_dict(), "filters": filters, "dedup": dd,
                "held_out": sample.candidates, "tokens": tokens, "sample": copy.deepcopy(sample),
                "trained": dict(trained)}

    whole = True  # the stream was read to its end (or to data.<which>.max_docs)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as pool:
        pending = None
        for batch in _batched(docs, pre.tokenize_batch_size):
            chosen = assign(batch)
            encoded = pool.submit(tokenize_batch, tokenizer, [d.text for d, _ in chosen])
            if pending is not None:
                tokens += pack(*pending)
            pending = (chosen, encoded)
            new_shard = len(train.writer.shards) > shards_saved
            if new_shard:
                tokens += pack(*pending)  # drained: everything read so far is packed
                pending, shards_saved = None, len(train.writer.shards)
            if train.full and (frozen or sample.candidates >= val_cap):
                whole = False
                break  # budget reached and the held-out sample has its cap of candidates: stop reading
            if new_shard and save is not None:
                save(place())
        if pending is not None:
            tokens += pack(*pending)
    if bar is not None:
        bar.close()
    held = sample.kept()
    if not frozen:
        for item in held:
            val.add(item.payload, item.doc_id, item.source)
    if filters.kept == 0 or (train.documents + len(held)) == 0:
        raise _nothing_left_error(which, filters, dd, corpus.problems.as_dict(), corpus.describe())
    out = {"source": spec.model_dump(mode="json"), "description": corpus.describe(),
           "unreadable": corpus.problems.as_dict(), "filters": filters.as_dict(), "dedup": dd.as_dict(),
           "tokens_tokenized": tokens, "documents_read": corpus.documents_read,
           "trained_composition": dict(trained.most_common()),
           # where the stream stopped: how a larger train budget continues it (cpt_utils.growth; not in the manifest)
           "_place": {**place(), "sample": None}}  # the sample is packed: growth keeps it frozen
    if not frozen:
        order = "a seeded random permutation of the file" if corpus.permuted else "the source's own order"
        out["held_out"] = sample.report(corpus.documents_read, whole, order)
    return out


def _process_register(name: str, params: ExperimentParams, tokenizer, dedup: Deduplicator,
                      val: SequencePacker, control: SequencePacker | None = None,
                      replay: SequencePacker | None = None) -> dict:
    """Pack one register (``data.registers.<name>``) into its own held-out split ``val_<name>``.

    The whole register is cleaned (with ``registers.register_quality``: filters that reject the
    register's ordinary text are off) and deduplicated against everything before it, then the
    ``preprocess.val_max_docs`` documents with the smallest hash of (seed, id) are kept (``HeldOutSample``,
    packed in hash order): a fixed, reproducible sample spread over the register, not its first files.
    Instruction pairs rendered with the chat template are encoded with their template tokens as special
    tokens. ``control``: when this register is the control run's text, the documents *not* held out are
    packed into it (stream order).
    ``replay``: likewise when a replay mixture draws from it (``replay_<name>``, up to
    ``preprocess.replay_token_budget``). Neither changes which documents are held out.
    """
    from .registers import RELAXED_QUALITY, register_quality

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
    _pack_documents(tokenizer, docs, val)
    held = {doc.id for doc in docs}
    rest = [doc for doc in everything if doc.id not in held]  # by id: a repeated id is never trained on
    for packer in (control, replay):
        for batch in _batched(rest, pre.tokenize_batch_size):
            if packer is None or packer.full:
                break
            _pack_documents(tokenizer, batch, packer)
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


def _pack_documents(tokenizer, docs: list[Document], packer: SequencePacker) -> None:
    """Tokenize and pack ``docs`` in order; chat-template documents keep their template tokens special."""
    special = [d for d in docs if d.meta.get("special_tokens")]
    plain = tokenize_batch(tokenizer, [d.text for d in docs if not d.meta.get("special_tokens")])
    templated = tokenizer([d.text for d in special], add_special_tokens=False)["input_ids"] if special else []
    plain_it, templated_it = iter(plain), iter(templated)
    for doc in docs:
        packer.add(next(templated_it) if doc.meta.get("special_tokens") else next(plain_it), doc.id, doc.source)


class _Tee:
    """Two training packers fed the same documents (the general corpus's replay and control splits): the
    same token ids go to both, so the control costs no second tokenization. Full when both are full;
    shard boundaries (what resume snapshots follow) are the first packer's."""

    def __init__(self, first: SequencePacker, second: SequencePacker):
        self.first, self.second = first, second
        self.writer = first.writer

    @property
    def full(self) -> bool:
        return self.first.full and self.second.full

    @property
    def documents(self) -> int:
        return self.first.documents + self.second.documents

    def add(self, token_ids, doc_id: str, source: str = "") -> None:
        for packer in (self.first, self.second):
            packer.add(token_ids, doc_id, source)  # a full packer ignores it


CONTROL_SPLIT = "control"


def _disjoint_from_held_out(data_dir: Path, split: str) -> list[str]:
    """The held-out splits ``split`` shares no document with (by id), checked on the written files; a
    shared document is a bug, never a data property (the split rules keep them apart), so it raises."""
    ids = lambda name: {json.loads(line)["id"] for line in (data_dir / name / "documents.jsonl").open()}  # noqa: E731
    mine = ids(split)
    held_out = [p.name for p in sorted(data_dir.glob("val_*")) if (p / "documents.jsonl").is_file()]
    overlap = {name: sorted(mine & ids(name))[:5] for name in held_out}
    overlap = {name: found for name, found in overlap.items() if found}
    if overlap:
        raise PreprocessError(f"replay split {split} shares documents with held-out splits: {overlap}")
    return held_out


def _control_report(data_dir: Path, params: ExperimentParams, info: dict, train_info: dict) -> dict:
    """The control split's provenance for the manifest: its corpus, size against the domain's training
    split, and a check (by document id) that no document of it is in any held-out split."""
    ids = lambda split: {json.loads(line)["id"] for line in (data_dir / split / "documents.jsonl").open()}  # noqa: E731
    control_ids = ids(CONTROL_SPLIT)
    held_out = [p.name for p in sorted(data_dir.glob("val_*")) if (p / "documents.jsonl").is_file()]
    overlap = {split: sorted(control_ids & ids(split))[:5] for split in held_out}
    overlap = {split: found for split, found in overlap.items() if found}
    if overlap:  # a bug, never a data property: the split rules keep them apart
        raise PreprocessError(f"control split shares documents with held-out splits: {overlap}")
    return {"corpus": params.control.corpus, "description": params.control.description,
            "documents": info["documents"], "num_tokens": info["num_tokens"], "num_sequences": info["num_sequences"],
            "train_split_tokens": train_info["num_tokens"], "disjoint_from": held_out,
            "how": ("documents not held out, after the shared deduplication (no exact or near duplicate of a "
                    "domain document or of an earlier corpus), capped at preprocess.train_token_budget like the "
                    "domain's training split")}


def _code_version() -> str:
    """Hash of the modules that decide what the data contains: changing a filter re-prepares the data."""
    digest = hashlib.blake2b(digest_size=6)
    for module in ("clean", "dedup", "packing", "preprocess", "corpora", "registers", "growth"):
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    return digest.hexdigest()


_TOKENIZERS: dict[str, object] = {}


def load_tokenizer_once(spec: ModelParams):
    """The model's tokenizer, loaded once per process (a reload costs ~0.2 s; notebooks re-run cells)."""
    from .modeling import load_tokenizer

    key = spec.model_dump_json()
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(spec)
    return _TOKENIZERS[key]


def _complete(data_dir: Path) -> bool:
    return all((data_dir / split / "split.json").is_file() for split in SPLITS)


def prepare_data(params: ExperimentParams, run_dir: Path, progress: bool = True, force: bool = False) -> dict:
    """Prepare ``run_dir/data`` (train, replay, val_domain, val_general + manifest.json) or reuse it."""
    from .modeling import document_separator_id, model_id, tokenizer_fingerprint

    data_dir = Path(run_dir) / "data"
    manifest_path = data_dir / "manifest.json"
    fingerprint, code = step_fingerprint(params, "preprocess"), _code_version()
    registers_done = all((data_dir / f"val_{r}" / "split.json").is_file() for r in params.data.registers)
    extra = [CONTROL_SPLIT] if params.control is not None else []  # splits beyond the standard ones
    # every register a replay mixture (main run or variant) names is packed, so a variant can change the
    # mixture on the same data; prepared data that lack one are prepared again (and then hold it)
    replayed = [source for source in replay_sources(params) if source != GENERAL_SOURCE]
    replay_extra = [replay_split_name(r) for r in replayed]
    registers_done = registers_done and all((data_dir / split / "split.json").is_file()
                                            for split in (*extra, *replay_extra))
    base = Path(params.source_path).parent if params.source_path else None
    sources = {which: open_corpus(getattr(params.data, which), base_dir=base, name=which).source_identity()
               for which in ("domain", "general")}
    if manifest_path.is_file() and not force and registers_done:
        manifest = json.loads(manifest_path.read_text())
        if (manifest.get("fingerprint"), manifest.get("code_version")) == (fingerprint, code) and _complete(data_dir):
            damaged = [p for split in (*SPLITS, *extra, *replay_extra) for p in verify_split(data_dir / split)]
            if not damaged:
                print(f"reusing prepared data in {data_dir} (fingerprint {fingerprint}: parameters and "
                      "preprocessing code unchanged, shard hashes verified; pass force=True to redo it)")
                return manifest
            print(f"not reusing {data_dir}: {len(damaged)} damaged shard file(s), e.g. {damaged[0]}; preparing it again")
        elif _complete(data_dir):
            state, why_not = growth.growth_plan(params, data_dir, manifest, code, sources)
            if state is not None:  # a larger train budget on the same stream: append shards
                return growth.grow(params, data_dir, manifest, state, fingerprint, progress)
            if manifest.get("fingerprint") != fingerprint:
                print(f"preparing {data_dir} again: the parameters changed and the data cannot grow in place ({why_not})")
    manifest_path.unlink(missing_ok=True)  # a half-rewritten data folder must never look finished

    pre = params.preprocess
    started = time.perf_counter()
    tokenizer = load_tokenizer_once(params.model)
    loaded = time.perf_counter()
    separator = document_separator_id(tokenizer)
    vocab = len(tokenizer)
    shard_sequences = max(1, pre.shard_tokens // pre.seq_len)

    def packer(split: str, budget: int | None, state: dict | None = None) -> SequencePacker:
        writer = ShardWriter(data_dir / split, pre.seq_len, vocab, shard_sequences, meta={"split": split},
                             state=state and state["writer"])
        held_out = split.startswith("val_")  # a held-out sample keeps every document: its tail is padded
        return SequencePacker(writer, separator, budget, state=state,
                              doc_max_tokens=pre.val_doc_tokens if held_out else None, pad_tail=held_out)

    budgets = {"train": pre.train_token_budget, "replay": pre.replay_token_budget, "val_domain": None, "val_general": None}
    budgets.update({split: pre.train_token_budget for split in extra})  # the control: as much as the domain may
    snapshot = None if force else _load_snapshot(data_dir, fingerprint, code, sources)
    if snapshot is None:
        (data_dir / SNAPSHOT).unlink(missing_ok=True)  # starting over: an older snapshot must never be resumed
    dedup = Deduplicator(pre.dedup)  # shared: a general document duplicating a domain one is dropped
    try:
        packers = {s: packer(s, b, snapshot and snapshot["packers"][s]) for s, b in budgets.items()}
        dedup.open_log(data_dir / DEDUP_LOG, snapshot and snapshot["dedup_log"])
    except (PackedDataError, OSError, ValueError) as err:
        if snapshot is None:
            raise
        print(f"not resuming the preprocessing in {data_dir}: {err}; starting over")
        (data_dir / SNAPSHOT).unlink()
        snapshot, dedup = None, Deduplicator(pre.dedup)
        packers = {s: packer(s, b) for s, b in budgets.items()}
        dedup.open_log(data_dir / DEDUP_LOG)
    corpora: dict[str, dict] = dict(snapshot["corpora"]) if snapshot else {}
    if snapshot:
        print(f"resuming the preprocessing in {data_dir} after {len(snapshot['packers']['train']['writer']['shards'])} "
              f"train and {len(snapshot['packers']['replay']['writer']['shards'])} replay shard(s) "
              f"(corpora finished: {', '.join(corpora) or 'none'})")

    def save(current: dict | None) -> None:
        """Snapshot everything a resumed run needs, after a shard (``current``: the corpus in progress)."""
        _save_snapshot(data_dir, {
            "fingerprint": fingerprint, "code_version": code, "sources": sources, "corpora": corpora, "current": current,
            "packers": {name: packers[name].state_dict() for name in budgets}, "dedup_log": dedup.log_offset()})

    current = snapshot["current"] if snapshot else None
    try:
        for which, train_split, val_split in (("domain", "train", "val_domain"), ("general", "replay", "val_general")):
            if which not in corpora:
                resume = current if current is not None and current["which"] == which else None
                into = packers[train_split]
                if which == "general" and params.control is not None and params.control.corpus == "general":
                    into = _Tee(into, packers[CONTROL_SPLIT])  # the control trains on general text
                corpora[which] = _process_corpus(which, params, tokenizer, separator, dedup, into,
                                                 packers[val_split], progress, resume, save)
                save(None)  # this corpus is finished: a crash in the next resumes after it
    except PreprocessError:
        (data_dir / SNAPSHOT).unlink(missing_ok=True)  # not an interruption: the same input fails again
        raise
    registers = {}
    for name in params.data.registers:  # after domain and general: a register repeating them is dropped
        if name in ("domain", "general"):
            raise PreprocessError(f"data.registers.{name}: the name would collide with split val_{name}")
        packers[f"val_{name}"] = packer(f"val_{name}", None)
        feeds_control = params.control is not None and params.control.corpus == name
        replay = None
        if name in replayed:
            replay = packers[replay_split_name(name)] = packer(replay_split_name(name), pre.replay_token_budget)
        registers[name] = _process_register(name, params, tokenizer, dedup, packers[f"val_{name}"],
                                            packers[CONTROL_SPLIT] if feeds_control else None, replay)
    splits = {name: p.close() for name, p in packers.items()}
    for name in replayed:
        registers[name]["replay"]["disjoint_from"] = _disjoint_from_held_out(data_dir, replay_split_name(name))
        if splits[replay_split_name(name)]["num_sequences"] == 0:
            raise PreprocessError(
                f"train.replay_mixture: source '{name}' has no complete replay sequence of {pre.seq_len} tokens: "
                f"{registers[name]['replay']['documents_eligible']} document(s) of data.registers.{name} are left "
                f"after the {registers[name]['documents_selected']} held out; give the register more documents "
                "(max_docs) or hold out fewer (preprocess.val_max_docs)")
    for name in params.data.registers:
        if splits[f"val_{name}"]["num_sequences"] == 0:
            raise PreprocessError(f"data.registers.{name}: split val_{name} has no complete sequence of "
                                  f"{pre.seq_len} tokens ({splits[f'val_{name}']['documents']} documents); "
                                  "use a larger preprocess.val_max_docs or a shorter seq_len")
    if extra and splits[CONTROL_SPLIT]["num_sequences"] == 0:
        raise PreprocessError(f"control.corpus: {params.control.corpus!r} left no complete sequence of {pre.seq_len} "
                              f"tokens for the control split ({splits[CONTROL_SPLIT]['documents']} documents not held "
                              "out); use a larger corpus or another control.corpus")
    for name in ("train", "val_domain", "val_general"):
        if splits[name]["num_sequences"] == 0:
            which = "domain" if name in ("train", "val_domain") else "general"
            c = corpora[which]
            lost = ", ".join(f"{n} by {stage_label(stage)}" for stage, n in removals(c["filters"], c["dedup"]) if n)
            kept = c["filters"]["kept"] - c["dedup"]["exact_removed"] - c["dedup"]["near_removed"]
            raise PreprocessError(
                f"split '{name}' has no complete sequence of {pre.seq_len} tokens "
                f"({splits[name]['documents']} documents, {splits[name]['dropped_tail_tokens']} tokens): "
                f"data.{which} kept {kept} of {c['filters']['seen']} documents"
                + (f" ({lost} removed)" if lost else "") + "; use more documents, a larger "
                "preprocess.val_max_docs/val_fraction, a shorter seq_len or a gentler stage")
    seconds = time.perf_counter() - started
    places = {which: c.pop("_place") for which, c in corpora.items()}
    held_out = {f"val_{which}": {**c.pop("held_out"), "padding_tokens": splits[f"val_{which}"]["padding_tokens"]}
                for which, c in (*corpora.items(), *registers.items())}
    tokenized = sum(c["tokens_tokenized"] for c in corpora.values())
    manifest = {
        "fingerprint": fingerprint, "code_version": code, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": seconds, "tokenizer_load_seconds": loaded - started,
        "tokens_per_second": tokenized / max(seconds, 1e-9),  # end to end, the tokenizer load included
        "stream_tokens_per_second": tokenized / max(seconds - (loaded - started), 1e-9),
        "tokenizer": {"model": model_id(params.model), "fingerprint": tokenizer_fingerprint(tokenizer),
                      "vocab_size": vocab, "separator_id": separator,
                      "separator_token": tokenizer.convert_ids_to_tokens(separator)},
        "seq_len": pre.seq_len, "corpora": corpora, "registers": registers,
        "control": _control_report(data_dir, params, splits[CONTROL_SPLIT], splits["train"]) if extra else None,
        "replay_sources": {source: replay_split_name(source) for source in (GENERAL_SOURCE, *replayed)},
        "held_out": held_out,
        "splits": {name: {k: info[k] for k in ("num_sequences", "num_tokens", "documents", "dropped_tail_tokens",
                                                "padding_tokens", "content_hash")} for name, info in splits.items()},
        "content_hash": hashlib.blake2b("".join(splits[s]["content_hash"] for s in SPLITS).encode(),
                                        digest_size=16).hexdigest(),
    }
    # where the domain stream stopped, and the dedup log (kept): how a larger train budget appends (growth.py)
    growth.save_state(data_dir, growth.initial_state(params, code, sources, places["domain"], packers["train"],
                                                     dedup.log_offset(), splits["train"]))
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(manifest_path)
    dedup.close_log()
    (data_dir / SNAPSHOT).unlink(missing_ok=True)  # finished: nothing to resume
    if pre.train_token_budget and splits["train"]["num_tokens"] < pre.train_token_budget:
        print(f"data.domain ran out: the train split holds {splits['train']['num_tokens']:,} tokens, below "
              f"preprocess.train_token_budget ({pre.train_token_budget:,}); a training budget beyond it repeats data")
    return manifest


SNAPSHOT = "resume.pkl"  # the last completed shard's snapshot: how an interrupted run continues
DEDUP_LOG = "dedup.log"  # the dedup index as an append-only log (the snapshot records its length)
SNAPSHOT_VERSION = 1


def _save_snapshot(data_dir: Path, state: dict) -> None:
    """Write the snapshot atomically (a crash while writing leaves the previous one intact).

    Pickle, because it holds numpy arrays, report objects and ``datasets``' state dict as they are; the
    file is only ever read by this code, for the same code version (checked)."""
    tmp = data_dir / f"{SNAPSHOT}.tmp"
    with open(tmp, "wb") as fh:
        pickle.dump({"version": SNAPSHOT_VERSION, **state}, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(data_dir / SNAPSHOT)


def _load_snapshot(data_dir: Path, fingerprint: str, code: str, sources: dict) -> dict | None:
    """The saved snapshot if it was made with these parameters, this code and unchanged local input
    files, else None (start over)."""
    path = data_dir / SNAPSHOT
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            state = pickle.load(fh)
    except Exception as err:  # noqa: BLE001 - any unreadable snapshot means: start over
        print(f"not resuming the preprocessing in {data_dir}: unreadable {path.name} ({err})")
        return None
    if (state.get("version"), state.get("fingerprint"), state.get("code_version")) != (SNAPSHOT_VERSION, fingerprint, code):
        print(f"not resuming the preprocessing in {data_dir}: parameters or preprocessing code changed; starting over")
        return None
    if state.get("sources") != sources:
        print(f"not resuming the preprocessing in {data_dir}: an input file changed (size or time); starting over")
        return None
    return state


def main(params_path: str) -> None:
    """``cpt prepare PARAMS``: preprocessing alone, outside the notebooks."""
    from .paths import configure_environment, run_dir

    params = load_params(params_path)
    configure_environment(offline=params.offline)
    manifest = prepare_data(params, run_dir(params.run_name))
    print(drop_summary(manifest))
    for name, split in manifest["splits"].items():
        print(f"{name:12s} {split['num_sequences']:>9,} sequences {split['num_tokens']:>13,} tokens "
              f"{split['documents']:>8,} documents")
    for line in held_out_lines(manifest):
        print(line)
