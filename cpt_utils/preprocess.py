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

import hashlib
import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

from . import growth
from .assets import asset_pins
from .atomic import atomic_file, atomic_write_json
from .code_identity import code_identity
from .config import GENERAL_SOURCE, ExperimentParams, load_params, replay_sources, step_fingerprint
from .corpora import open_corpus
from .corpus_processing import (
    DEDUP_LOG, PreprocessError, load_tokenizer_once, process_corpus, process_register,
)
from .dedup import Deduplicator
from .modeling import model_id, tokenizer_fingerprint
from .packing import document_separator_id
from .packing import SPLITS, PackedDataError, SequencePacker, ShardWriter, replay_split_name, verify_split
from .paths import configure_environment, run_dir
from .preprocess_report import drop_summary, held_out_lines, removals, stage_label

SNAPSHOT = "resume.pkl"  # the last completed shard's snapshot: how an interrupted run continues
SNAPSHOT_VERSION = 1
#: The package whose code ``_code_version`` reads (a test points it at a copy).
PACKAGE = Path(__file__).parent
#: Package modules preprocessing imports whose code does not decide what the data contains, neither hashed
#: nor followed by ``_code_version`` (which follows every other import from this module): files, paths,
#: errors, the allocator, the parameters (keyed by value: ``step_fingerprint``), the model loader (the
#: tokenizer is named by the parameters' model), the drop report and its figures, and the assets' fetching
#: (their pins are keyed by value).
DATA_BOOKKEEPING = frozenset({"atomic", "paths", "errors", "allocator", "config", "modeling", "preprocess_report",
                              "plots", "assets"})


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
    """What decides the data's content besides the parameters: this module's code and every package module
    it reaches (the filters, deduplication, packing, the corpus readers…), and the packaged assets' pins (a
    new pin of a packaged corpus is other text under the same name). Changing either prepares again."""
    blob = json.dumps([code_identity(PACKAGE, ["preprocess"], DATA_BOOKKEEPING), asset_pins()])
    return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


def _complete(data_dir: Path) -> bool:
    return all((data_dir / split / "split.json").is_file() for split in SPLITS)


# ------------------------------------------------------------------------------- the preparation
def prepare_data(params: ExperimentParams, run_dir: Path, progress: bool = True, force: bool = False) -> dict:
    """Prepare ``run_dir/data`` (train, replay, val_domain, val_general + manifest.json) or reuse it.

    The phases, in order: plan (fingerprint, code version, input files); reuse or grow prepared data;
    open (tokenizer, packers, dedup log, or the interrupted run's snapshot); the domain and general
    corpora; the registers; close and check the splits; the manifest (written last).
    """
    plan = _Plan.of(params, run_dir)
    if not force:
        reused = _reuse_or_grow(params, plan, progress)
        if reused is not None:
            return reused
    plan.manifest_path.unlink(missing_ok=True)  # a half-rewritten data folder must never look finished
    prep = _Preparation(params, plan, force)
    prep.process_corpora(progress)
    registers = prep.process_registers()  # after domain and general: a register repeating them is dropped
    splits = {name: p.close() for name, p in prep.packers.items()}
    _check_replay_and_register_splits(params, plan, registers, splits)
    _check_control_and_standard_splits(params, plan, prep.corpora, splits)
    return prep.finish(registers, splits)


@dataclass
class _Plan:
    """What a preparation is checked against before any work: its fingerprint, the code version, the
    splits beyond the standard ones and the local input files' identity."""

    data_dir: Path
    fingerprint: str
    code: str
    extra: list[str]  # splits beyond the standard ones: the control's
    replayed: list[str]  # registers a replay mixture (main run or variant) names
    sources: dict

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / "manifest.json"

    @classmethod
    def of(cls, params: ExperimentParams, run_dir: Path) -> _Plan:
        # every register a replay mixture (main run or variant) names is packed, so a variant can change the
        # mixture on the same data; prepared data that lack one are prepared again (and then hold it)
        base = Path(params.source_path).parent if params.source_path else None
        return cls(data_dir=Path(run_dir) / "data", fingerprint=step_fingerprint(params, "preprocess"),
                   code=_code_version(), extra=[CONTROL_SPLIT] if params.control is not None else [],
                   replayed=[source for source in replay_sources(params) if source != GENERAL_SOURCE],
                   sources=_source_identities(params, base))


def _source_identities(params: ExperimentParams, base: Path | None) -> dict:
    """Each corpus's local input files (path, size, modification time), registers included, by the key
    that names the corpus: prepared data, a snapshot or a growth state made from other files is not
    reused (hub and packaged corpora are named by the parameters already: None)."""
    specs = {"data.domain": params.data.domain, "data.general": params.data.general,
             **{f"data.registers.{name}": spec for name, spec in params.data.registers.items()}}
    return {key: open_corpus(spec, base_dir=base, name=key).source_identity() for key, spec in specs.items()}


def _reuse_or_grow(params: ExperimentParams, plan: _Plan, progress: bool) -> dict | None:
    """The manifest of prepared data that can be reused as they are (verified) or grown in place to a
    larger train budget; None: prepare from scratch (or resume a snapshot)."""
    data_dir, fingerprint, code = plan.data_dir, plan.fingerprint, plan.code
    replay_extra = [replay_split_name(r) for r in plan.replayed]
    registers_done = all((data_dir / f"val_{r}" / "split.json").is_file() for r in params.data.registers)
    registers_done = registers_done and all((data_dir / split / "split.json").is_file()
                                            for split in (*plan.extra, *replay_extra))
    if not (plan.manifest_path.is_file() and registers_done):
        return None
    manifest = json.loads(plan.manifest_path.read_text())
    made_from = manifest.get("sources", {})
    changed = sorted(key for key in {*plan.sources, *made_from} if plan.sources.get(key) != made_from.get(key))
    if changed:  # the parameters name the same files, but what they hold may differ: never reuse it
        print(f"preparing {data_dir} again: an input file of {', '.join(changed)} changed since it was prepared "
              "(size or modification time)")
        return None
    if (manifest.get("fingerprint"), manifest.get("code_version")) == (fingerprint, code) and _complete(data_dir):
        damaged = [p for split in (*SPLITS, *plan.extra, *replay_extra) for p in verify_split(data_dir / split)]
        if not damaged:
            print(f"reusing prepared data in {data_dir} (fingerprint {fingerprint}: parameters and "
                  "preprocessing code unchanged, shard hashes verified; pass force=True to redo it)")
            return manifest
        print(f"not reusing {data_dir}: {len(damaged)} damaged shard file(s), e.g. {damaged[0]}; preparing it again")
    elif _complete(data_dir):
        state, why_not = growth.growth_plan(params, data_dir, manifest, code, plan.sources)
        if state is not None:  # a larger train budget on the same stream: append shards
            return growth.grow(params, data_dir, manifest, state, fingerprint, progress)
        if manifest.get("fingerprint") != fingerprint:
            print(f"preparing {data_dir} again: the parameters changed and the data cannot grow in place ({why_not})")
    return None


class _Preparation:
    """One preparation from its start (or its snapshot) to the manifest: the tokenizer, every split's
    packer, the deduplicator shared by all corpora, and the reports of the corpora finished so far."""

    def __init__(self, params: ExperimentParams, plan: _Plan, force: bool):
        self.params, self.plan, self.pre = params, plan, params.preprocess
        self.started = time.perf_counter()
        self.tokenizer = load_tokenizer_once(params.model)
        self.loaded = time.perf_counter()
        self.separator = document_separator_id(self.tokenizer)
        self.vocab = len(self.tokenizer)
        pre = self.pre
        self.budgets = {"train": pre.train_token_budget, "replay": pre.replay_token_budget,
                        "val_domain": None, "val_general": None}
        self.budgets.update({split: pre.train_token_budget for split in plan.extra})  # the control: as much as the domain may
        self._open(None if force else _load_snapshot(plan.data_dir, plan.fingerprint, plan.code, plan.sources))

    def packer(self, split: str, budget: int | None, state: dict | None = None) -> SequencePacker:
        """A split's packer (from its saved state when resuming); a held-out split pads its tail."""
        pre = self.pre
        writer = ShardWriter(self.plan.data_dir / split, pre.seq_len, self.vocab, max(1, pre.shard_tokens // pre.seq_len),
                             meta={"split": split}, state=state and state["writer"])
        held_out = split.startswith("val_")  # a held-out sample keeps every document: its tail is padded
        return SequencePacker(writer, self.separator, budget, state=state,
                              doc_max_tokens=pre.val_doc_tokens if held_out else None, pad_tail=held_out)

    def _open(self, snapshot: dict | None) -> None:
        """The packers and the dedup log, from the snapshot of an interrupted run where it can resume."""
        data_dir = self.plan.data_dir
        if snapshot is None:
            (data_dir / SNAPSHOT).unlink(missing_ok=True)  # starting over: an older snapshot must never be resumed
        self.dedup = Deduplicator(self.pre.dedup)  # shared: a general document duplicating a domain one is dropped
        try:
            self.packers = {s: self.packer(s, b, snapshot and snapshot["packers"][s]) for s, b in self.budgets.items()}
            self.dedup.open_log(data_dir / DEDUP_LOG, snapshot and snapshot["dedup_log"])
        except (PackedDataError, OSError, ValueError) as err:
            if snapshot is None:
                raise
            print(f"not resuming the preprocessing in {data_dir}: {err}; starting over")
            (data_dir / SNAPSHOT).unlink()
            snapshot, self.dedup = None, Deduplicator(self.pre.dedup)
            self.packers = {s: self.packer(s, b) for s, b in self.budgets.items()}
            self.dedup.open_log(data_dir / DEDUP_LOG)
        self.corpora: dict[str, dict] = dict(snapshot["corpora"]) if snapshot else {}
        if snapshot:
            print(f"resuming the preprocessing in {data_dir} after {len(snapshot['packers']['train']['writer']['shards'])} "
                  f"train and {len(snapshot['packers']['replay']['writer']['shards'])} replay shard(s) "
                  f"(corpora finished: {', '.join(self.corpora) or 'none'})")
        self.current = snapshot["current"] if snapshot else None

    def save(self, current: dict | None) -> None:
        """Snapshot everything a resumed run needs, after a shard (``current``: the corpus in progress)."""
        plan = self.plan
        _save_snapshot(plan.data_dir, {
            "fingerprint": plan.fingerprint, "code_version": plan.code, "sources": plan.sources,
            "corpora": self.corpora, "current": current,
            "packers": {name: self.packers[name].state_dict() for name in self.budgets},
            "dedup_log": self.dedup.log_offset()})

    def process_corpora(self, progress: bool) -> None:
        """The domain corpus into ``train``/``val_domain``, the general one into ``replay``/``val_general``
        (and the control split when the control trains on general text); each finished one is snapshotted."""
        params, packers = self.params, self.packers
        try:
            for which, train_split, val_split in (("domain", "train", "val_domain"), ("general", "replay", "val_general")):
                if which in self.corpora:
                    continue  # finished before the interruption
                resume = self.current if self.current is not None and self.current["which"] == which else None
                into = packers[train_split]
                if which == "general" and params.control is not None and params.control.corpus == "general":
                    into = _Tee(into, packers[CONTROL_SPLIT])  # the control trains on general text
                self.corpora[which] = process_corpus(which, params, self.tokenizer, self.separator, self.dedup, into,
                                                     packers[val_split], progress, resume, self.save)
                self.save(None)  # this corpus is finished: a crash in the next resumes after it
        except PreprocessError:
            (self.plan.data_dir / SNAPSHOT).unlink(missing_ok=True)  # not an interruption: the same input fails again
            raise

    def process_registers(self) -> dict:
        """Each register into its held-out split ``val_<name>`` (and the control or its replay split)."""
        params, pre, registers = self.params, self.pre, {}
        for name in params.data.registers:
            if name in ("domain", "general"):
                raise PreprocessError(f"data.registers.{name}: the name would collide with split val_{name}")
            self.packers[f"val_{name}"] = self.packer(f"val_{name}", None)
            feeds_control = params.control is not None and params.control.corpus == name
            replay = None
            if name in self.plan.replayed:
                replay = self.packers[replay_split_name(name)] = self.packer(replay_split_name(name), pre.replay_token_budget)
            registers[name] = process_register(name, params, self.tokenizer, self.dedup, self.packers[f"val_{name}"],
                                               self.packers[CONTROL_SPLIT] if feeds_control else None, replay)
        return registers

    def finish(self, registers: dict, splits: dict) -> dict:
        """Write the growth state and the manifest (last); the snapshot goes: nothing left to resume."""
        plan, pre = self.plan, self.pre
        manifest, places = self.manifest(registers, splits)
        # where the domain stream stopped, and the dedup log (kept): how a larger train budget appends (growth.py)
        growth.save_state(plan.data_dir, growth.initial_state(self.params, plan.code, plan.sources, places["domain"],
                                                              self.packers["train"], self.dedup.log_offset(), splits["train"]))
        atomic_write_json(plan.manifest_path, manifest, indent=1)
        self.dedup.close_log()
        (plan.data_dir / SNAPSHOT).unlink(missing_ok=True)  # finished: nothing to resume
        if pre.train_token_budget and splits["train"]["num_tokens"] < pre.train_token_budget:
            print(f"data.domain ran out: the train split holds {splits['train']['num_tokens']:,} tokens, below "
                  f"preprocess.train_token_budget ({pre.train_token_budget:,}); a training budget beyond it repeats data")
        return manifest

    def manifest(self, registers: dict, splits: dict) -> tuple[dict, dict]:
        """The manifest, and each corpus's place (taken out of its report: for growth, not the manifest)."""
        plan, params, tokenizer, corpora = self.plan, self.params, self.tokenizer, self.corpora
        seconds = time.perf_counter() - self.started
        loading = self.loaded - self.started
        places = {which: c.pop("_place") for which, c in corpora.items()}
        held_out = {f"val_{which}": {**c.pop("held_out"), "padding_tokens": splits[f"val_{which}"]["padding_tokens"]}
                    for which, c in (*corpora.items(), *registers.items())}
        tokenized = sum(c["tokens_tokenized"] for c in corpora.values())
        return {
            "fingerprint": plan.fingerprint, "code_version": plan.code, "sources": plan.sources,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": seconds, "tokenizer_load_seconds": loading,
            "tokens_per_second": tokenized / max(seconds, 1e-9),  # end to end, the tokenizer load included
            "stream_tokens_per_second": tokenized / max(seconds - loading, 1e-9),
            "tokenizer": {"model": model_id(params.model), "fingerprint": tokenizer_fingerprint(tokenizer),
                          "vocab_size": self.vocab, "separator_id": self.separator,
                          "separator_token": tokenizer.convert_ids_to_tokens(self.separator)},
            "seq_len": self.pre.seq_len, "corpora": corpora, "registers": registers,
            "control": (_control_report(plan.data_dir, params, splits[CONTROL_SPLIT], splits["train"])
                        if plan.extra else None),
            "replay_sources": {source: replay_split_name(source) for source in (GENERAL_SOURCE, *plan.replayed)},
            "held_out": held_out,
            "splits": {name: {k: info[k] for k in ("num_sequences", "num_tokens", "documents", "dropped_tail_tokens",
                                                    "padding_tokens", "content_hash")} for name, info in splits.items()},
            "content_hash": hashlib.blake2b("".join(splits[s]["content_hash"] for s in SPLITS).encode(),
                                            digest_size=16).hexdigest(),
        }, places


def _check_replay_and_register_splits(params: ExperimentParams, plan: _Plan, registers: dict, splits: dict) -> None:
    """Each register replay split is disjoint from every held-out split and holds a sequence; each
    register's held-out split holds one too (records ``disjoint_from`` in the register's report)."""
    pre = params.preprocess
    for name in plan.replayed:
        registers[name]["replay"]["disjoint_from"] = _disjoint_from_held_out(plan.data_dir, replay_split_name(name))
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


def _check_control_and_standard_splits(params: ExperimentParams, plan: _Plan, corpora: dict, splits: dict) -> None:
    """The control split and the standard train/held-out splits each hold at least one sequence; the
    message says what removed the documents."""
    pre = params.preprocess
    if plan.extra and splits[CONTROL_SPLIT]["num_sequences"] == 0:
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


def _save_snapshot(data_dir: Path, state: dict) -> None:
    """Write the snapshot atomically (a crash while writing leaves the previous one intact).

    Pickle, because it holds numpy arrays, report objects and ``datasets``' state dict as they are; the
    file is only ever read by this code, for the same code version (checked)."""
    with atomic_file(data_dir / SNAPSHOT) as fh:
        pickle.dump({"version": SNAPSHOT_VERSION, **state}, fh, protocol=pickle.HIGHEST_PROTOCOL)


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
    params = load_params(params_path)
    configure_environment(offline=params.offline)
    manifest = prepare_data(params, run_dir(params.run_name))
    print(drop_summary(manifest))
    for name, split in manifest["splits"].items():
        print(f"{name:12s} {split['num_sequences']:>9,} sequences {split['num_tokens']:>13,} tokens "
              f"{split['documents']:>8,} documents")
    for line in held_out_lines(manifest):
        print(line)
