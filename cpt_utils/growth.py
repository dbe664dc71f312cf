"""Growing prepared data in place: a larger ``preprocess.train_token_budget`` appends train shards.

The paper's run continues one model from 400M to 1B tokens on *more of the same stream*. Preparing
again from scratch would change every shard (and the data's hash, so the 400M checkpoint could not be
resumed); reusing the 400M data would make the sampler repeat it. Instead a finished preparation
leaves ``data/grow.pkl``: where the domain stream stopped (``datasets``' own state for a hub stream,
the document count for files), the train packer's dropped tail (the rest of the document the budget
cut), the filter/dedup reports and the held-out count, and the length of the dedup log (``dedup.log``,
kept: about 235 bytes per document). Asked for a larger train budget with otherwise the same
parameters, code and input files, ``prepare_data`` continues from there:

- the existing train shards stay byte-identical (re-verified by content hash) and new shards are
  appended; ``split.json`` records the sequences each preparation added (``blocks``), which the sampler
  shuffles one after the other, so the first 400M tokens are drawn in exactly the same order;
- every other split (held-out, replay, registers) is untouched: a held-out-hashed document met in the
  continuation is left out of both splits (the held-out sample is frozen, so earlier evaluations stay
  comparable, and a held-out candidate is never trained on), and new documents are deduplicated
  against everything prepared so far;
- documents the first preparation read but did not pack (the rest of the tokenizer batch that filled
  the budget, and, while the held-out set was still filling, later ones) are not revisited: the
  continuation starts after the last document read, which the manifest records;
- the manifest records the growth (budgets, sequences and documents before and after) and its
  ``lineage.root``: the content hash of the data as first prepared, which is what training keys a run
  on (``data_identity``), so a grown data folder still resumes its checkpoints.

Not covered: growing the replay budget, or shrinking (both prepare from scratch). With
``preprocess.val_max_docs: null`` the first preparation reads the whole stream to fill the held-out set,
so there is nothing left to append (the growth says so).
"""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import shutil
import time
from pathlib import Path

from .atomic import atomic_file, atomic_write_json
from .config import ExperimentParams, step_fingerprint
from .corpus_processing import DEDUP_LOG, load_tokenizer_once, process_corpus
from .dedup import Deduplicator
from .errors import CptError
from .packing import document_separator_id
from .packing import SPLITS, PackedDataError, SequencePacker, ShardWriter, verify_split

GROW_STATE = "grow.pkl"
GROW_VERSION = 1


class GrowthError(CptError, RuntimeError):
    """Prepared data cannot continue a checkpoint's trajectory (its train split changed shape)."""


def stream_fingerprint(params: ExperimentParams) -> str:
    """The preprocessing fingerprint without the train budget: equal means "the same stream"."""
    pre = params.preprocess.model_copy(update={"train_token_budget": None})
    return step_fingerprint(params.model_copy(update={"preprocess": pre}), "preprocess")


def data_identity(manifest: dict) -> str:
    """What a training trajectory is keyed on: the content hash of the data as first prepared. Growth
    only appends train shards (the prefix is re-verified byte for byte), so it keeps this identity."""
    return manifest.get("lineage", {}).get("root") or manifest["content_hash"]


def resume_problem(checkpoint: dict, blocks: list[int]) -> str | None:
    """Why a checkpoint cannot continue on a train split with these ``blocks`` (None: it can). The
    sampler's order depends on the blocks, so the checkpoint's must be a prefix of the current ones: a
    run trained on data grown 400M → 700M cannot continue on the same data grown 400M → 1B in one go."""
    old = checkpoint.get("train_blocks")
    if old is None or list(blocks[:len(old)]) == list(old):
        return None
    return (f"{checkpoint.get('path', checkpoint.get('name'))} was trained on a train split of blocks {old} (sequences "
            f"per preparation), the data now has {list(blocks)}: the sampler's order differs after block "
            f"{next(i for i, (a, b) in enumerate(zip(old, blocks + [None] * len(old))) if a != b)}; prepare the data "
            "again growing it in the same steps, or train from scratch (resume: never)")


# ------------------------------------------------------------------------------------------ state
def save_state(data_dir: Path, state: dict) -> None:
    """Write ``grow.pkl`` atomically (pickle: it holds report objects and ``datasets``' state dict; only
    this code reads it, for the same code version)."""
    with atomic_file(Path(data_dir) / GROW_STATE) as fh:
        pickle.dump({"version": GROW_VERSION, **state}, fh, protocol=pickle.HIGHEST_PROTOCOL)


def initial_state(params: ExperimentParams, code: str, sources: dict, place: dict, train: SequencePacker,
                  dedup_log: int, train_info: dict) -> dict:
    """What a finished preparation saves so a larger train budget can continue its domain stream."""
    return {"stream_fingerprint": stream_fingerprint(params), "code_version": code, "sources": sources,
            "budget": params.preprocess.train_token_budget, "domain": copy.deepcopy(place),
            "train": train.state_dict(), "dedup_log": dedup_log, "train_content_hash": train_info["content_hash"]}


def growth_plan(params: ExperimentParams, data_dir: Path, manifest: dict, code: str, sources: dict) -> tuple[dict | None, str]:
    """The saved state to grow ``data_dir`` from, or None and the reason it cannot grow."""
    path = Path(data_dir) / GROW_STATE
    new_budget = params.preprocess.train_token_budget
    if not path.is_file():
        return None, "no grow.pkl (prepared before growth was supported, or not finished)"
    try:
        with open(path, "rb") as fh:
            state = pickle.load(fh)
    except Exception as err:  # noqa: BLE001 - unreadable state: prepare from scratch
        return None, f"unreadable {GROW_STATE} ({err})"
    old_budget = state.get("budget")
    if state.get("version") != GROW_VERSION or state.get("code_version") != code:
        return None, "the preprocessing code changed"
    if state.get("stream_fingerprint") != stream_fingerprint(params):
        return None, "parameters other than preprocess.train_token_budget changed"
    if state.get("sources") != sources:
        return None, "an input file changed (size or time)"
    if old_budget is None or (new_budget is not None and new_budget <= old_budget):
        return None, (f"preprocess.train_token_budget went {old_budget} → {new_budget}: only a larger finite "
                      "budget grows the data")
    if state.get("train_content_hash") != manifest["splits"]["train"]["content_hash"]:
        return None, f"{GROW_STATE} does not belong to this train split (an interrupted growth)"
    damaged = [p for split in SPLITS for p in verify_split(Path(data_dir) / split)]
    if damaged:
        return None, f"{len(damaged)} damaged shard file(s), e.g. {damaged[0]}"
    return state, ""


def _position(stream: dict) -> dict:
    """A stream place in words: documents read, and records read for a hub stream."""
    hub = stream.get("hub")
    return {"documents_read": stream["documents_read"], **({"records_read": hub["records"]} if hub else {})}


class _FrozenSplit:
    """Stands in for a held-out packer while growing: the held-out set is not extended (earlier
    evaluations stay comparable); documents hashed to it are left out of training too."""

    full = True
    documents = 0


def grow(params: ExperimentParams, data_dir: Path, manifest: dict, state: dict, fingerprint: str,
         progress: bool = True) -> dict:
    """Continue the domain stream of a finished preparation up to the new train budget; return the new
    manifest (written last, after the split and the new ``grow.pkl``)."""
    started = time.perf_counter()
    data_dir, pre = Path(data_dir), params.preprocess
    tokenizer = load_tokenizer_once(params.model)
    train_dir = data_dir / "train"
    before = manifest["splits"]["train"]["num_sequences"]
    old_info = json.loads((train_dir / "split.json").read_text())
    # the packer appends to a copy of documents.jsonl (truncated to the saved length): the published one
    # stays until the split is closed
    shutil.copyfile(train_dir / "documents.jsonl", train_dir / "documents.jsonl.tmp")
    writer_state = {**state["train"]["writer"], "blocks": old_info.get("blocks") or [before]}
    try:
        writer = ShardWriter(train_dir, pre.seq_len, manifest["tokenizer"]["vocab_size"],
                             max(1, pre.shard_tokens // pre.seq_len), meta={"split": "train"}, state=writer_state,
                             append=True)
    except PackedDataError as err:
        raise GrowthError(f"cannot grow {data_dir}: {err}") from None
    train = SequencePacker(writer, document_separator_id(tokenizer), pre.train_token_budget,
                           state={**state["train"], "writer": writer_state})
    dedup = Deduplicator(pre.dedup)
    dedup.open_log(data_dir / DEDUP_LOG, state["dedup_log"])  # everything prepared so far, general and registers too
    place = state["domain"]
    held_before, read_before = place["held_out"], place["stream"]["documents_read"]
    target = "the end of the stream" if pre.train_token_budget is None else f"{pre.train_token_budget:,} tokens"
    print(f"growing {data_dir}: train budget {state['budget']:,} → {target}; continuing the "
          f"domain stream after document {read_before:,} ({before:,} sequences kept byte-identical)")
    corpus = process_corpus("domain", params, tokenizer, manifest["tokenizer"]["separator_id"], dedup, train,
                            _FrozenSplit(), progress, resume=place)
    new_place = corpus.pop("_place")
    info = train.close()
    after = info["num_sequences"]
    record = {"from_budget": state["budget"], "to_budget": pre.train_token_budget,
              "train_sequences_before": before, "train_sequences_after": after,
              "documents_read_before": read_before, "documents_read_after": corpus["documents_read"],
              "stream_position": _position(new_place["stream"]),
              "held_out_documents_left_out": new_place["held_out"] - held_before,
              "created": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": time.perf_counter() - started}
    if pre.train_token_budget is not None and after * pre.seq_len < pre.train_token_budget:
        record["exhausted"] = True
        print(f"data.domain is exhausted: the train split holds {after * pre.seq_len:,} tokens, below "
              f"preprocess.train_token_budget ({pre.train_token_budget:,})")
    splits = dict(manifest["splits"])
    splits["train"] = {k: info[k] for k in ("num_sequences", "num_tokens", "documents", "dropped_tail_tokens", "content_hash")}
    lineage = manifest.get("lineage") or {"root": manifest["content_hash"], "growth": []}
    new = {**manifest, "fingerprint": fingerprint, "corpora": {**manifest["corpora"], "domain": corpus},
           "splits": splits, "lineage": {**lineage, "growth": lineage["growth"] + [record]},
           "content_hash": hashlib.blake2b("".join(splits[s]["content_hash"] for s in SPLITS).encode(),
                                           digest_size=16).hexdigest()}
    save_state(data_dir, {**state, "stream_fingerprint": stream_fingerprint(params), "budget": pre.train_token_budget,
                          "domain": copy.deepcopy(new_place), "train": train.state_dict(),
                          "dedup_log": dedup.log_offset(), "train_content_hash": info["content_hash"]})
    dedup.close_log()
    atomic_write_json(data_dir / "manifest.json", new, indent=1)
    print(f"train split grown: {before:,} → {after:,} sequences ({(after - before) * pre.seq_len:,} tokens appended)")
    return new
