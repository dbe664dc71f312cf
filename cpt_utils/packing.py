"""Packed sequences on disk: the format, an atomic shard writer, a memory-mapped reader, and the
resumable sampler that mixes domain and replay sequences.

On-disk format of one split (``runs/<run>/data/<split>/``, split ∈ train, replay, val_domain, val_general,
and per register ``val_<name>`` and, when a replay mixture draws from it, ``replay_<name>``)::

    split.json                 written last (atomically): seq_len, dtype, counts, shard list, eos id
    shard-00000.ids.npy        [n_seq, seq_len] token ids (uint16 when the vocabulary fits, else uint32)
    shard-00000.pos.npy        [n_seq, seq_len] position of each token inside its document fragment;
                               0 marks a document start, so position ids restart per document and the
                               boundaries are recoverable (per-document attention needs exactly this)
    shard-00000.doc.npy        [n_seq] index (into documents.jsonl) of the document the first token
                               belongs to; later documents of the sequence follow in order, one per 0
    documents.jsonl            one line per packed document: id, source, tokens (provenance, and how
                               tests prove that no document is in two splits)

Every training sequence is full (the last partial one is dropped, so there is no padding to mask).
Held-out splits (``pad_tail``) instead pad their last sequence with separator tokens, so no kept
document is lost: ``split.json`` records ``padding_tokens`` (all at the end of the last sequence), whose
positions belong to document −1 (``PackedSplit.document_indices``) and carry label −100 (``batch``).
Documents are followed by the separator token, and a split without ``split.json`` is incomplete and
refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .atomic import atomic_file, atomic_write_json, publish
from .errors import CptError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SPLITS = ("train", "replay", "val_domain", "val_general")
#: The general corpus's replay split keeps its historical name ``replay``; a register's is ``replay_<name>``.
GENERAL_REPLAY_SPLIT = "replay"
FORMAT_VERSION = 1


class PackedDataError(CptError, RuntimeError):
    pass


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def file_digest(path: Path) -> str:
    """blake2b of a file's bytes: how a corrupted or partly written shard is recognised."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify_split(split_dir: str | Path) -> list[str]:
    """Files of a finished split whose content hash differs from the one recorded when it was written
    (reads every shard: ≈ 1 s per GB; run before data is reused, not at every open)."""
    split_dir = Path(split_dir)
    info = json.loads((split_dir / "split.json").read_text())
    problems = []
    for shard in info["shards"]:
        for suffix, expected in shard.get("files", {}).items():
            path = split_dir / f"{shard['name']}.{suffix}.npy"
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif file_digest(path) != expected:
                problems.append(f"{path}: content hash differs from the one recorded when it was written "
                                "(corrupted or partly written)")
    return problems


class ShardWriter:
    """Accumulates full sequences and writes them as shards; ``close`` publishes ``split.json``.

    Each shard is written under a temporary name and renamed, so a crash never leaves a shard that
    looks complete; a split is only readable once ``close`` has written its ``split.json``. Given a
    ``state`` (``state_dict`` of an interrupted writer) it keeps and re-verifies the shards listed there
    and deletes only the rest. ``append`` (growing a finished split, ``cpt_utils.growth``) also keeps the
    published ``split.json`` and ``documents.jsonl`` until ``close`` replaces them, so a crash while
    growing leaves the old split readable.
    """

    def __init__(self, split_dir: str | Path, seq_len: int, vocab_size: int, shard_sequences: int,
                 meta: dict | None = None, state: dict | None = None, append: bool = False):
        self.dir = Path(split_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        keep = {f"{shard['name']}.{suffix}.npy" for shard in (state or {}).get("shards", []) for suffix in shard["files"]}
        if state is not None:
            keep.add("documents.jsonl.tmp")  # the packer truncates it to the saved length
        if append:
            keep |= {"split.json", "documents.jsonl"}
        for stale in [*self.dir.glob("shard-*"), *self.dir.glob("split.json*"), *self.dir.glob("documents.jsonl*"),
                      *self.dir.glob(".*.tmp")]:  # a killed writer's temporaries (cpt_utils.atomic)
            if stale.name not in keep:
                stale.unlink()  # a restart rewrites the split from scratch (a resumed one from its last shard)
        self.seq_len = seq_len
        self.dtype = token_dtype(vocab_size)
        self.shard_sequences = max(1, shard_sequences)
        self.meta = meta or {}
        self._pos_dtype = np.dtype(np.uint32 if seq_len > 65535 else np.uint16)
        # one preallocated shard buffer, filled row by row: memory is bounded by the rows written so far
        # in this shard (untouched pages of np.empty cost nothing), never by the corpus
        self._ids: np.ndarray | None = None
        self._pos: np.ndarray | None = None
        self._doc: np.ndarray | None = None
        self._rows = 0
        self.shards: list[dict] = []
        self.num_sequences = 0
        #: sequences per earlier generation of a grown split (empty for a split written in one go)
        self.blocks: list[int] = list((state or {}).get("blocks", []))
        self._hash = hashlib.blake2b(digest_size=16)
        if state is not None:
            self._restore(state)

    def state_dict(self) -> dict:
        """What resuming needs: the shards written (names, sizes, file hashes) and the rows of the
        unfinished shard (copies: the buffer is reused)."""
        n = self._rows
        rows = None if self._ids is None else (self._ids[:n].copy(), self._pos[:n].copy(), self._doc[:n].copy())
        return {"shards": [dict(s) for s in self.shards], "num_sequences": self.num_sequences, "rows": rows,
                "blocks": list(self.blocks)}

    def _restore(self, state: dict) -> None:
        """Continue after the shards in ``state``: each is checked against its recorded content hash
        (a damaged one is refused, never packed on) and feeds the running hash again, which hashlib
        cannot save."""
        for shard in state["shards"]:
            for suffix, expected in shard["files"].items():
                path = self.dir / f"{shard['name']}.{suffix}.npy"
                if not path.is_file() or file_digest(path) != expected:
                    raise PackedDataError(f"{path}: missing or its content hash differs from the one recorded "
                                          "when it was written; cannot resume from it")
            self._hash.update(np.ascontiguousarray(np.load(self.dir / f"{shard['name']}.ids.npy")))
            self.shards.append(dict(shard))
        self.num_sequences = state["num_sequences"]
        if state["rows"] is not None:
            ids, pos, doc = state["rows"]
            self.num_sequences -= len(ids)  # ``add`` counts them again
            for row in range(len(ids)):
                self.add(ids[row], pos[row], int(doc[row]))

    def add(self, ids: np.ndarray, pos: np.ndarray, first_doc: int = -1) -> None:
        if ids.shape != (self.seq_len,) or pos.shape != (self.seq_len,):
            raise PackedDataError(f"sequence shape {ids.shape}/{pos.shape} != ({self.seq_len},)")
        if self._ids is None:
            self._ids = np.empty((self.shard_sequences, self.seq_len), self.dtype)
            self._pos = np.empty((self.shard_sequences, self.seq_len), self._pos_dtype)
            self._doc = np.empty(self.shard_sequences, np.int64)
        row = self._rows
        self._ids[row], self._pos[row], self._doc[row] = ids, pos, first_doc
        self._rows += 1
        self.num_sequences += 1
        if self._rows >= self.shard_sequences:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        name, n = f"shard-{len(self.shards):05d}", self._rows
        self._hash.update(self._ids[:n])  # the rows' bytes, as one C-contiguous block (no copy)
        digests = {}
        for suffix, array in (("ids", self._ids[:n]), ("pos", self._pos[:n]), ("doc", self._doc[:n])):
            final = self.dir / f"{name}.{suffix}.npy"
            with atomic_file(final) as handle:
                np.save(handle, array)
            digests[suffix] = file_digest(final)  # read back from the page cache: what is on disk
        self.shards.append({"name": name, "num_sequences": n, "files": digests})
        self._rows = 0

    def close(self) -> dict:
        self._flush()
        info = {
            "format_version": FORMAT_VERSION, "seq_len": self.seq_len, "dtype": self.dtype.name,
            "num_sequences": self.num_sequences, "num_tokens": self.num_sequences * self.seq_len,
            "shards": self.shards, "content_hash": self._hash.hexdigest(), **self.meta,
        }
        if self.blocks:  # a grown split: the sequences each preparation added, in order (the sampler's blocks)
            added = self.num_sequences - sum(self.blocks)
            info["blocks"] = self.blocks + ([added] if added else [])
        atomic_write_json(self.dir / "split.json", info, indent=1)
        return info


class PackedSplit:
    """Read-only, memory-mapped view of one split: ``split[i]`` → (ids, positions) as int64 arrays."""

    def __init__(self, split_dir: str | Path):
        self.dir = Path(split_dir)
        info_path = self.dir / "split.json"
        if not info_path.is_file():
            raise PackedDataError(f"{self.dir}: no split.json — the split is missing or was never finished")
        self.info = json.loads(info_path.read_text())
        self.seq_len: int = self.info["seq_len"]
        shards = self.info["shards"]
        self._ids = [self._load(s, "ids", (s["num_sequences"], self.seq_len)) for s in shards]
        self._doc = [self._load(s, "doc", (s["num_sequences"],)) if (self.dir / f"{s['name']}.doc.npy").is_file()
                     else np.full(s["num_sequences"], -1) for s in shards]
        self._pos = [self._load(s, "pos", (s["num_sequences"], self.seq_len)) for s in shards]
        self._offsets = np.cumsum([0] + [len(a) for a in self._ids])

    def _load(self, shard: dict, suffix: str, shape: tuple[int, ...]) -> np.ndarray:
        """Memory-map one shard file, refusing a missing, truncated or reshaped one (cheap: the header
        and the file size; ``verify_split`` checks the content hashes)."""
        path = self.dir / f"{shard['name']}.{suffix}.npy"
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise PackedDataError(f"{path}: unreadable shard ({err}); prepare the data again (cpt prepare)") from None
        if array.shape != shape:
            raise PackedDataError(f"{path}: shape {array.shape}, split.json says {shape}: a partial or foreign "
                                  "shard; prepare the data again (cpt prepare)")
        return array

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def blocks(self) -> list[int]:
        """Sequences per preparation, in order: one block for a split written in one go, one more per
        growth (``cpt_utils.growth``); the sampler shuffles within each so appending keeps the order."""
        return list(self.info.get("blocks") or [len(self)])

    @property
    def num_tokens(self) -> int:
        return len(self) * self.seq_len

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"sequence {index} out of range for {len(self)} sequences in {self.dir.name}")
        shard = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return shard, index - int(self._offsets[shard])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        shard, row = self._locate(index)
        return self._ids[shard][row].astype(np.int64), self._pos[shard][row].astype(np.int64)

    @property
    def padding_tokens(self) -> int:
        """Padding at the end of the last sequence (held-out splits; 0 for splits that drop their tail)."""
        return int(self.info.get("padding_tokens", 0))

    def padding_mask(self, index: int) -> np.ndarray:
        """True at the padding positions of sequence ``index`` (only the last sequence has any)."""
        mask = np.zeros(self.seq_len, dtype=bool)
        if self.padding_tokens and index == len(self) - 1:
            mask[self.seq_len - self.padding_tokens:] = True
        return mask

    def document_indices(self, index: int) -> np.ndarray:
        """For each token of sequence ``index``, the index of its document in ``documents.jsonl``;
        −1 for padding (no document: every per-document statistic must skip it)."""
        shard, row = self._locate(index)
        pos = self._pos[shard][row]
        starts = (pos == 0).astype(np.int64)
        starts[0] = 0  # the first token belongs to ``first_doc`` whether it starts it or continues it
        owner = int(self._doc[shard][row]) + np.cumsum(starts)
        owner[self.padding_mask(index)] = -1
        return owner

    def documents(self) -> list[dict]:
        """The packed documents, in packing order (empty if the split predates documents.jsonl)."""
        path = self.dir / "documents.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]

    def batch(self, indices: list[int]) -> dict:
        """A training/eval batch as torch tensors: input_ids, position_ids and labels (= input_ids)."""
        import torch  # lazy: preparing and reading splits needs numpy only; torch for training batches

        ids = np.stack([self[i][0] for i in indices])
        pos = np.stack([self[i][1] for i in indices])
        ids_t = torch.from_numpy(ids)
        labels = ids_t.clone()
        labels[torch.from_numpy(np.stack([self.padding_mask(i) for i in indices]))] = -100  # padding: no loss
        return {"input_ids": ids_t, "position_ids": torch.from_numpy(pos), "labels": labels}


class SequencePacker:
    """Concatenate documents, each followed by the separator token, and cut full sequences.

    Position ids restart at 0 at every document start *and* at the start of every sequence (a document
    continuing from the previous sequence is a new fragment: attention never reaches back into the
    previous sequence anyway). Only the current documents' tokens are buffered, so memory is bounded by
    the longest document, not by the corpus.

    ``doc_max_tokens`` keeps only each document's first tokens (held-out splits: a long code file or
    novel otherwise fills many correlated sequences, while the SE's unit is the document).
    ``pad_tail`` (held-out splits) pads the last partial sequence at ``close`` instead of dropping it:
    a held-out sample of a few dozen documents must not silently lose its last one.
    """

    def __init__(self, writer: ShardWriter, separator_id: int, token_budget: int | None = None,
                 state: dict | None = None, doc_max_tokens: int | None = None, pad_tail: bool = False):
        self.writer = writer
        self.pad_tail = pad_tail
        self.seq_len = writer.seq_len
        self.separator_id = separator_id
        self.token_budget = token_budget
        self.doc_max_tokens = doc_max_tokens
        self._fragments: list[tuple[int, np.ndarray]] = []  # (document index, remaining tokens)
        self._buffered = 0
        self.documents = 0
        docs_path = writer.dir / "documents.jsonl.tmp"
        if state is None:
            self._docs_tmp = open(docs_path, "w", encoding="utf-8")
        else:
            self._fragments = [(doc, np.asarray(tokens)) for doc, tokens in state["fragments"]]
            self._buffered, self.documents = state["buffered"], state["documents"]
            with open(docs_path, "r+b") as fh:
                fh.truncate(state["documents_offset"])  # lines a crashed run wrote after the snapshot
            self._docs_tmp = open(docs_path, "a", encoding="utf-8")

    def state_dict(self) -> dict:
        """The buffered document fragments and the length of ``documents.jsonl`` so far (the writer's
        state is saved beside it). After ``close`` it is where a grown split continues: the dropped tail
        (the rest of the document the budget cut) starts its next sequence."""
        if not self._docs_tmp.closed:
            self._docs_tmp.flush()
            self._docs_size = self._docs_tmp.tell()
        return {"fragments": [(doc, tokens.copy()) for doc, tokens in self._fragments], "buffered": self._buffered,
                "documents": self.documents, "documents_offset": self._docs_size,
                "writer": self.writer.state_dict()}

    @property
    def tokens_written(self) -> int:
        return self.writer.num_sequences * self.seq_len

    @property
    def full(self) -> bool:
        return self.token_budget is not None and self.tokens_written >= self.token_budget

    def add(self, token_ids: list[int] | np.ndarray, doc_id: str, source: str = "") -> None:
        if self.full:
            return
        kept = list(token_ids) if self.doc_max_tokens is None else list(token_ids)[: self.doc_max_tokens]
        ids = np.asarray(kept + [self.separator_id], dtype=np.int64)
        self._docs_tmp.write(json.dumps({"id": doc_id, "source": source, "tokens": int(len(ids))}) + "\n")
        self._fragments.append((self.documents, ids))
        self.documents += 1
        self._buffered += len(ids)
        while self._buffered >= self.seq_len and not self.full:
            self._emit()

    def _emit(self) -> None:
        ids = np.empty(self.seq_len, dtype=np.int64)
        pos = np.empty(self.seq_len, dtype=np.int64)
        first_doc, filled = self._fragments[0][0], 0
        while filled < self.seq_len:
            doc, tokens = self._fragments[0]
            take = min(len(tokens), self.seq_len - filled)
            ids[filled:filled + take] = tokens[:take]
            pos[filled:filled + take] = np.arange(take)
            filled += take
            if take == len(tokens):
                self._fragments.pop(0)
            else:
                self._fragments[0] = (doc, tokens[take:])
        self._buffered -= self.seq_len
        self.writer.add(ids, pos, first_doc)

    def _pad(self) -> int:
        """Fill the last partial sequence with separator tokens (a fragment of its own: positions restart
        at 0, so no document attends to it); returns the padding added."""
        padding = self.seq_len - self._buffered if self._buffered else 0
        if padding:
            self._fragments.append((self.documents, np.full(padding, self.separator_id, dtype=np.int64)))
            self._buffered += padding
            self._emit()
        return padding

    def close(self) -> dict:
        """Drop the incomplete last sequence (``pad_tail``: pad it) and publish the split; ``split.json``
        records the documents and the padding."""
        self._docs_tmp.flush()
        self._docs_size = self._docs_tmp.tell()
        self._docs_tmp.close()
        publish(self.writer.dir / "documents.jsonl.tmp", self.writer.dir / "documents.jsonl")
        padding = self._pad() if self.pad_tail else 0
        self.writer.meta.update(documents=self.documents, padding_tokens=padding)
        info = self.writer.close()
        info["dropped_tail_tokens"] = self._buffered
        return info


def replay_split_name(source: str) -> str:
    """The split a replay source is packed into: ``replay`` for ``general``, ``replay_<register>`` else."""
    return GENERAL_REPLAY_SPLIT if source == "general" else f"replay_{source}"


def open_split(run_dir: str | Path, split: str) -> PackedSplit:
    if split not in SPLITS and split != "control" and not split.startswith(("val_", "replay_")):
        raise PackedDataError(f"unknown split '{split}'; allowed: {SPLITS}, control, val_<register>, replay_<register>")
    return PackedSplit(Path(run_dir) / "data" / split)


# ------------------------------------------------------------------------------------------ sampling
@dataclass
class SamplerState:
    """Everything needed to continue the sample stream exactly where it stopped."""

    batches: int = 0          # global batches produced so far
    train_cursor: int = 0     # sequences consumed from train (across epochs)
    replay_cursors: dict[str, int] = field(default_factory=dict)  # per replay split, across epochs
    replay_carry: float = 0.0  # error diffusion so the long-run replay share is exactly r


class DataRepeatWarning(UserWarning):
    """A token budget needs more sequences than a split holds: the sampler starts another epoch."""


class MixedSampler:
    """Deterministic, resumable stream of global batches mixing domain and replay sequences.

    Each global batch has ``world_size × micro_batch_size`` rows; ``round(r × rows)`` of them (with the
    rounding error carried to the next batch, so the long-run share is exactly ``r``) come from replay.
    With several replay splits (``replay_weights``: split → weight, summing to 1), each replay row's
    split is drawn independently by the weights from a generator seeded by (seed, batch number): the
    shares match the weights in expectation (binomial noise around them) and the draw of batch *k* does
    not depend on how the stream got there, so resuming needs no generator state. One replay split
    draws nothing at all, so ``replay_fraction`` alone gives exactly the stream it always gave.
    All ranks compute the same global batch and take their own slice, so there is nothing to
    synchronise, and resuming is just restoring ``SamplerState``.

    Order: the first epoch of a split visits its *blocks* in order (``PackedSplit.blocks``: the
    sequences each preparation added; one block unless the data was grown), each block a permutation
    seeded by (seed, split, block). Appending a block therefore leaves the order of every earlier
    sequence unchanged — a run grown from 400M to 1B tokens sees its first 400M exactly as before.
    Later epochs (the data repeats) are permutations of the whole split seeded by (seed, split, epoch).
    Block 0 uses the seed of epoch 0, so a split that never grew is sampled as before blocks existed.
    """

    def __init__(self, n_train: int | list[int], n_replay: int | list[int] | dict[str, int | list[int]],
                 micro_batch_size: int, replay_fraction: float = 0.0, seed: int = 0, rank: int = 0,
                 world_size: int = 1, replay_weights: dict[str, float] | None = None):
        sizes = n_replay if isinstance(n_replay, dict) else {GENERAL_REPLAY_SPLIT: n_replay}
        self.blocks = {"train": _blocks(n_train), **{name: _blocks(n) for name, n in sizes.items()}}
        self.n = {split: sum(b) for split, b in self.blocks.items()}
        if self.n["train"] <= 0:
            raise PackedDataError("the train split has no sequences")
        self.replay_weights = dict(replay_weights or {GENERAL_REPLAY_SPLIT: 1.0})
        if missing := [name for name in self.replay_weights if name not in sizes]:
            raise PackedDataError(f"replay_weights name split(s) {missing} without a size; sizes given: {sorted(sizes)}")
        if not math.isclose(sum(self.replay_weights.values()), 1.0) or min(self.replay_weights.values()) <= 0:
            raise PackedDataError(f"replay_weights must be positive and sum to 1, got {self.replay_weights}")
        for name in self.replay_weights:
            if replay_fraction > 0 and self.n[name] <= 0:
                raise PackedDataError(f"replay_fraction > 0 but the replay split has no sequences ({name})")
        self.micro_batch_size = micro_batch_size
        self.replay_fraction = replay_fraction
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.state = SamplerState()
        self._perm_cache: dict[tuple[str, int, int], np.ndarray] = {}

    def _permutation(self, split: str, epoch: int, block: int, size: int) -> np.ndarray:
        key = (split, epoch, block)
        if key not in self._perm_cache:
            self._perm_cache = {k: v for k, v in self._perm_cache.items() if k[0] != split}
            stream = _split_stream(split)
            seed = [self.seed, stream, epoch] if block == 0 else [self.seed, stream, epoch, block]
            self._perm_cache[key] = np.random.default_rng(seed).permutation(size)
        return self._perm_cache[key]

    def _index(self, split: str, cursor: int) -> int:
        n, blocks = self.n[split], self.blocks[split]
        epoch, offset = divmod(cursor, n)
        if epoch > 0 or len(blocks) == 1:
            return int(self._permutation(split, epoch, 0, n)[offset])
        start = 0
        for block, size in enumerate(blocks):
            if offset < start + size:
                return start + int(self._permutation(split, 0, block, size)[offset - start])
            start += size
        raise AssertionError("unreachable: offset < n")

    def _replay_rows(self, carry: float) -> tuple[int, float]:
        """(replay rows of the next global batch, the rounding error carried on)."""
        if self.replay_fraction <= 0:
            return 0, carry
        rows = self.micro_batch_size * self.world_size
        wanted = self.replay_fraction * rows + carry
        n_replay = min(rows, int(math.floor(wanted + 0.5)))
        return n_replay, wanted - n_replay

    def _replay_splits(self, n_replay: int, batch: int | None = None) -> list[str]:
        """The split of each of batch ``batch``'s (default: the next one's) replay rows, drawn by the weights."""
        names = list(self.replay_weights)
        if len(names) == 1:
            return names * n_replay
        rng = np.random.default_rng([self.seed, 2, self.state.batches if batch is None else batch])
        drawn = rng.choice(len(names), size=n_replay, p=list(self.replay_weights.values()))
        return [names[i] for i in drawn]

    def sequences_needed(self, global_batches: int) -> dict[str, int]:
        """Sequences each split gives to ``global_batches`` batches from the current state (the same
        carried rounding and per-batch draws as ``next_global_batch``, replayed without moving it)."""
        rows = self.micro_batch_size * self.world_size
        s = self.state
        needed = {"train": s.train_cursor, **{name: s.replay_cursors.get(name, 0) for name in self.replay_weights}}
        carry = s.replay_carry
        for k in range(global_batches):
            n_replay, carry = self._replay_rows(carry)
            for split in self._replay_splits(n_replay, s.batches + k):
                needed[split] += 1
            needed["train"] += rows - n_replay
        return needed

    def repeat_warning(self, global_batches: int) -> str | None:
        """What repeats if the run takes ``global_batches`` batches in all: None when every split's
        sequences are each seen at most once."""
        needed = self.sequences_needed(max(0, global_batches - self.state.batches))
        over = [f"{split}: {count:,} sequences from {self.n[split]:,} ({count / self.n[split]:.2f} epochs)"
                for split, count in needed.items() if self.n[split] and count > self.n[split]]
        if not over:
            return None
        return ("the token budget exceeds one epoch of the prepared data, so the sampler repeats sequences ("
                + "; ".join(over) + "). To train on new text instead, raise preprocess.train_token_budget (or "
                "replay_token_budget) and prepare again: a larger train budget appends shards to the same stream")

    def next_global_batch(self) -> list[tuple[str, int]]:
        rows = self.micro_batch_size * self.world_size
        s = self.state
        n_replay, s.replay_carry = self._replay_rows(s.replay_carry)
        picks = []
        for split in self._replay_splits(n_replay):
            cursor = s.replay_cursors.get(split, 0)
            picks.append((split, self._index(split, cursor)))
            s.replay_cursors[split] = cursor + 1
        picks += [("train", self._index("train", s.train_cursor + i)) for i in range(rows - n_replay)]
        s.train_cursor += rows - n_replay
        s.batches += 1
        # interleave deterministically so replay rows are spread over ranks, not all on rank 0
        random.Random(self.seed * 1_000_003 + s.batches).shuffle(picks)
        return picks

    def next_batch(self) -> list[tuple[str, int]]:
        """This rank's micro-batch: its slice of the next global batch."""
        picks = self.next_global_batch()
        b = self.micro_batch_size
        return picks[self.rank * b:(self.rank + 1) * b]

    def state_dict(self) -> dict:
        state = dict(vars(self.state))
        state["replay_cursors"] = dict(state["replay_cursors"])  # a copy: the live one keeps moving
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        if "replay_cursor" in state:  # saved before replay mixtures: one general replay split
            state["replay_cursors"] = {GENERAL_REPLAY_SPLIT: state.pop("replay_cursor")}
        self.state = SamplerState(**{**state, "replay_cursors": dict(state.get("replay_cursors", {}))})


def _blocks(n: int | list[int]) -> list[int]:
    blocks = [int(n)] if isinstance(n, (int, np.integer)) else [int(b) for b in n]
    return [b for b in blocks if b > 0] or [0]


def _split_stream(split: str) -> int:
    """The permutation stream of a split: train 0 and replay 1 as always (unchanged orders), any other
    split a stable number from its name (never Python's salted ``hash``)."""
    fixed = {"train": 0, GENERAL_REPLAY_SPLIT: 1}
    if split in fixed:
        return fixed[split]
    return int.from_bytes(hashlib.blake2b(split.encode(), digest_size=4).digest(), "big") + 3


def training_stream(data_dir: str | Path, train_params, seed: int, rank: int = 0,
                    world_size: int = 1) -> tuple[dict[str, PackedSplit], MixedSampler]:
    """What training draws from: the train split (``train_params.train_split``: ``control`` for a control
    run), the general ``replay`` split and ``replay_<register>`` for each source of
    ``train.replay_mixture``; and the sampler over them (block-aware, so grown data keep their order).

    A mixture source whose split was never packed is refused with what to do: preprocessing packs every
    source the main parameters or any variant name, so this means the data predate that name."""
    data_dir = Path(data_dir)
    weights = {replay_split_name(source): w for source, w in train_params.replay_weights().items()}
    splits = {"train": PackedSplit(data_dir / getattr(train_params, "train_split", "train"))}
    for name in dict.fromkeys([GENERAL_REPLAY_SPLIT, *weights]):
        if name != GENERAL_REPLAY_SPLIT and not (data_dir / name / "split.json").is_file():
            source = name.removeprefix("replay_")
            raise PackedDataError(f"{data_dir / name}: no replay split for train.replay_mixture source '{source}'; "
                                  "prepare the data again with these parameters (cpt prepare): every source named "
                                  "by the main parameters or a variant is packed")
        splits[name] = PackedSplit(data_dir / name)
    sampler = MixedSampler(splits["train"].blocks, {name: splits[name].blocks for name in weights},
                           train_params.micro_batch_size, train_params.replay_fraction, seed=seed, rank=rank,
                           world_size=world_size, replay_weights=weights)
    return splits, sampler


def heldout_splits(data_dir: Path, only: list[str] | None = None) -> list[str]:
    """The held-out splits prepared for a run: domain, general, then one per register (``val_<name>``);
    ``only`` (``eval.heldout_splits``) keeps those named (in that same order), each of which must be prepared."""
    found = sorted(p.name for p in Path(data_dir).glob("val_*") if (p / "split.json").is_file())
    first = [s for s in ("val_domain", "val_general") if s in found]
    prepared = first + [s for s in found if s not in first]
    if only is None:
        return prepared
    missing = [s for s in only if s not in prepared]
    if missing:
        raise PackedDataError(f"eval.heldout_splits: {', '.join(map(repr, missing))} not prepared in {data_dir}; "
                              f"the prepared held-out splits are {', '.join(prepared) or '(none)'}")
    return [s for s in prepared if s in only]


#: Tokens that end a document in pre-training vocabularies, in order of preference.
DOC_SEPARATOR_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>")


class SeparatorError(PackedDataError):
    """A tokenizer has no token that can separate packed documents."""


def document_separator_id(tokenizer: "PreTrainedTokenizerBase") -> int:
    """The token placed between packed documents: the pre-training end-of-text token when the
    vocabulary has one (SmolLM2's ``<|endoftext|>``; the instruct model's EOS is a chat token)."""
    vocab = tokenizer.get_vocab()
    for candidate in DOC_SEPARATOR_CANDIDATES:
        if candidate in vocab:
            return vocab[candidate]
    if tokenizer.eos_token_id is None:
        raise SeparatorError("tokenizer has neither an end-of-text nor an EOS token")
    return tokenizer.eos_token_id

