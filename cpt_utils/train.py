"""Continued pre-training with Accelerate: one loop, readable top to bottom.

    python -m cpt_utils.train PARAMS                       one process (CPU or one GPU)
    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes N -m cpt_utils.train PARAMS
                                                           N GPUs (DDP; fsdp.yaml, deepspeed-zero2.yaml)
    torchrun --standalone --nproc_per_node 2 -m cpt_utils.train PARAMS   multi-process on CPU (gloo)

``train`` = ``setup`` (accelerator and engine, data, model, optimizer, ``StepPlan``) → ``resume`` →
``fit`` (the loop; one optimizer step is ``_train_step``). What differs between DDP, FSDP2 and DeepSpeed
lives in ``engines``. The budget is in tokens; checkpoints land at token milestones; the LR is a pure
function of the step (``schedules``); the sample stream is a resumable ``MixedSampler``. Resuming
restores the model, optimizer, every process's RNG and the sampler, so an interrupted run continues on
exactly the trajectory it would have followed (with the same number of processes; others are refused).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import psutil
import torch
from accelerate.utils import compile_regions, set_seed
from torch._inductor.runtime.cache_dir_utils import default_cache_dir
from tqdm.auto import tqdm

from . import engines
from .atomic import atomic_write
from .attention import attention_as, training_attention
from .attention import check_supported as check_attention_supported
from .checkpointing import latest_resumable, list_checkpoints, load_checkpoint_model, save_checkpoint
from .config import ExperimentParams, load_params
from .errors import CptError
from .grad_norm import clip_grad_norm
from .growth import resume_problem
from .heldout_eval import (base_heldout_path, checkpoint_heldout_path, metrics_row, score_heldout,
                           store_heldout)
from .hardware import mfu, peak_flops
from .losses import causal_lm_loss
from .modeling import load_model, load_tokenizer, tokenizer_fingerprint
from .packing import DataRepeatWarning, MixedSampler, PackedSplit, heldout_splits, training_stream
from .paths import cache_dir, configure_environment, run_dir as make_run_dir
from .perplexity import perplexity
from .precision import autocast, resolve_precision
from .row_blocks import row_blocks_for_training
from .results import heldout_fingerprint, run_fingerprint, trajectory_changes, trajectory_fingerprint, trajectory_record
from .schedules import Segment, continuation, lr_at
from .tracking import LOGGED_MARK, log_train

__all__ = ["train", "setup", "resume", "fit", "main", "list_checkpoints", "load_checkpoint_model", "TrainingDiverged"]

class TrainingDiverged(CptError, RuntimeError):
    pass


class DataMismatch(CptError, RuntimeError):
    pass


# ------------------------------------------------------------------------------------------ helpers
def compile_cache_dir() -> Path:
    """Inductor's FX-graph/kernel cache inside the project cache, so variants and reruns reuse it.

    Set before the first compilation (inductor reads ``TORCHINDUCTOR_CACHE_DIR`` whenever it needs the
    folder). A user's own setting wins; torch's default (``/tmp/torchinductor_<user>``, which torch writes
    into the environment the first time it asks) does not."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "torch_compile")
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


CompileMode = Literal["off", "model", "regions"]


def compile_mode(requested: bool | str) -> CompileMode:
    """What ``train.compile`` does: ``true`` the whole model, ``regions`` the repeated decoder layers.

    Off by default, measured per CPU kind (benchmarks/README.md): the compiled layers step at ≈ 1.35x eager
    on a 2-core AMX Xeon, 1.04-1.10x on an AVX-512 BF16 EPYC and 1.00-1.02x on an AVX2 EPYC (fp32), whose
    matrix products already run near their peaks, after a 16-26 s cold compile that the quickstart's 134
    steps barely repay even on the AMX Xeon (12 min 47 s vs 12 min 53 s from a fresh clone). Eager and ``regions``
    runs are bit-reproducible from process to process (``regions`` keeps the embedding eager:
    ``_embeddings_eager``); the whole model compiled on CPU is not (inductor's embedding backward adds with
    atomics). A compiled step's gradient equals eager's in fp32 (1e-6 in the loss, ``compile_gradient_probe.py``);
    in bf16 it rounds differently, so a compiled run follows its own trajectory (``trajectory_probe.py``)."""
    return {True: "model", False: "off", "regions": "regions"}[requested]


def compiled_for_training(model, mode: CompileMode = "model"):
    """The module the training forward calls (``mode`` from ``compile_mode``); evaluation and checkpoints
    keep the eager ``model``, whose parameters the compiled module shares.

    ``model``: ``torch.compile`` of the whole model. ``regions``: accelerate's ``compile_regions`` — a
    shallow copy of the model whose repeated blocks (the decoder layers) are compiled; the blocks share
    one graph, so the cold compile is one layer's. Shapes are fixed (micro-batch × seq_len), so one graph
    serves the whole run; the per-document mask survives compilation because transformers'
    ``find_packed_sequence_indices`` always builds the packed mask while tracing (it only skips it
    eagerly when a batch holds one document per row, which gives the same mask)."""
    if mode == "off":
        return model
    compile_cache_dir()
    if mode == "model":
        return torch.compile(model)
    compiled = compile_regions(model)
    _embeddings_eager(compiled)
    return compiled


def _embeddings_eager(module: torch.nn.Module) -> None:
    """Put back the eager embedding layers ``compile_regions`` compiled beside the repeated blocks: inductor's
    CPU kernel for an embedding's backward adds the rows of repeated tokens with atomics from several threads,
    in whatever order the threads arrive, so the same step gave different gradients run to run; eager's is
    deterministic. (The compiled copy is accelerate's shallow copy: the model itself is not touched.)"""
    for name, child in list(module.named_children()):
        original = getattr(child, "_orig_mod", None)
        if isinstance(original, torch.nn.Embedding):
            module._modules[name] = original
        elif original is None:
            _embeddings_eager(child)


def flops_per_token(config, n_params: int, seq_len: int) -> float:
    """Training FLOPs per token for the MFU estimate: 6N for the weights' matmuls plus 12·L·d·T for
    attention scores and values (PaLM, Chowdhery et al. 2022, appendix B) — at sequence 2048 the
    attention term is ≈ half of 6N for a 135M model, so leaving it out would understate MFU."""
    return 6 * n_params + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def _memory_mb(device_type: str) -> float:
    if device_type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return psutil.Process().memory_info().rss / 2**20


def _check_data(params: ExperimentParams, data_dir: Path, tokenizer) -> None:
    """Refuse data prepared with another tokenizer or sequence length (silent garbage otherwise)."""
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        raise DataMismatch(f"{data_dir}: no manifest.json — run preprocessing first (notebook 02 or `cpt prepare`)")
    manifest = json.loads(manifest_path.read_text())
    if manifest["tokenizer"]["fingerprint"] != tokenizer_fingerprint(tokenizer):
        raise DataMismatch(f"{data_dir} was tokenized with {manifest['tokenizer']['model']}, not this model's tokenizer")
    if manifest["seq_len"] != params.preprocess.seq_len:
        raise DataMismatch(f"{data_dir} has sequences of {manifest['seq_len']} tokens, params say {params.preprocess.seq_len}")


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint (the killed run's lost steps)."""
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))


def _evaluate(model, splits: dict[str, PackedSplit], params: ExperimentParams, precision: str, tokenizer=None) -> dict:
    """The in-loop point of every held-out split on its first ``train.eval_max_sequences``: loss with its
    document-clustered SE, perplexity, and bits per byte (from the decoded text) when the tokenizer is given."""
    return metrics_row({name: perplexity(model, split, max_sequences=params.train.eval_max_sequences,
                                         batch_size=params.train.micro_batch_size,
                                         per_document=params.train.per_document_attention, precision=precision,
                                         tokenizer=tokenizer)
                        for name, split in splits.items()})


# --------------------------------------------------------------------------------------------- setup
@dataclass(frozen=True)
class StepPlan:
    """Token budget and cadences turned into optimizer steps: tokens per step = micro-batch × seq_len ×
    accumulation × processes, so every count below depends on the world size."""

    tokens_per_step: int
    total_steps: int
    milestone_steps: frozenset[int]
    eval_every: int | None
    ckpt_every: int | None
    warmup: int

    @classmethod
    def from_params(cls, tp, seq_len: int, num_processes: int) -> "StepPlan":
        tokens_per_step = tp.micro_batch_size * seq_len * tp.grad_accum_steps * num_processes
        every = lambda tokens: max(1, round(tokens / tokens_per_step)) if tokens else None  # noqa: E731
        return cls(tokens_per_step=tokens_per_step,
                   total_steps=math.ceil(tp.token_budget / tokens_per_step),
                   milestone_steps=frozenset(math.ceil(m / tokens_per_step) for m in tp.milestones
                                             if m <= tp.token_budget),
                   eval_every=every(tp.eval_every_tokens), ckpt_every=every(tp.checkpoint_every_tokens),
                   warmup=math.ceil(tp.warmup_tokens / tokens_per_step))

    def segment(self, tp, start: int = 0) -> Segment:
        """The LR schedule from ``start`` to the end of the budget (a new segment when resuming grew it)."""
        return Segment(start, self.total_steps, self.warmup, tp.lr, tp.min_lr_ratio, tp.schedule,
                       tp.decay_fraction, tp.decay_shape)


@dataclass
class TrainState:
    """Everything ``setup`` builds and ``fit`` runs on; ``step`` and ``segment`` move as training goes."""

    params: ExperimentParams
    run_dir: Path
    data_dir: Path
    accelerator: Any
    precision: str
    tokenizer: Any
    model: Any                # the prepared (possibly wrapped) module: checkpoints, evaluation, clipping
    step_model: Any           # what the training forward calls: the model, or its compiled form (compile_mode)
    optimizer: Any
    sampler: MixedSampler
    splits: dict[str, PackedSplit]   # train and every replay split, indexed by the sampler's picks
    val: dict[str, PackedSplit]      # held-out splits for the in-loop evaluation
    pull: engines.L2Pull | None      # the L2 pull toward the base model, when train.l2_init_weight > 0
    plan: StepPlan
    segment: Segment
    trajectory: str
    trajectory_parts: dict           # the trajectory's parts, readable: a refused resume names the one that moved
    fingerprint: str
    metrics_path: Path
    n_params: int
    flops_token: float
    peak: float | None
    eval_copy: engines.EvalCopy
    step: int = 0
    compile_mode: CompileMode = "off"  # what train.compile asks for (compile_mode)
    attention: str = "sdpa"  # the kernel the training step runs (attention.training_attention; evaluation: sdpa)
    row_blocks: dict = field(default_factory=dict)  # Linear shapes whose step products run in row blocks (row_blocks)


def _finished_run(params: ExperimentParams, run_dir: Path, data_dir: Path) -> dict | None:
    """The final checkpoint of this exact run (same trajectory and budget), unless resume is never."""
    fingerprint = run_fingerprint(params, data_dir)
    finished = [c for c in list_checkpoints(run_dir) if c.get("final") and c.get("params_fingerprint") == fingerprint]
    return finished[-1] if finished and params.train.resume != "never" else None


def forget_trained_model(run_dir: Path) -> None:
    """Remove what described the previous trained model: its checkpoints, its evaluations (the base
    model's is kept: those weights still exist), its decay branches and the trackers' record of it."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(run_dir / "branches", ignore_errors=True)
    for path in (run_dir / "evals").glob("*.json") if (run_dir / "evals").is_dir() else []:
        if path.name != "base.json":
            path.unlink()
    (run_dir / LOGGED_MARK).unlink(missing_ok=True)


def setup(params: ExperimentParams, run_dir: Path, data_dir: Path) -> TrainState:
    """Accelerator and precision, data and sampler, model and optimizer, and the step arithmetic."""
    tp = params.train
    if (params.model.attn_implementation == "flash_attention_2" and tp.per_document_attention
            and tp.micro_batch_size > 1):
        # transformers runs FlashAttention-2 varlen from position_ids only for a batch of 1 row
        # (modeling_flash_attention_utils._is_packed_sequence); with more rows documents would attend
        # to each other silently
        raise ValueError("model.attn_implementation: flash_attention_2 isolates packed documents only with "
                         "train.micro_batch_size: 1 (raise grad_accum_steps instead), or use sdpa")
    device_probe = "cuda" if torch.cuda.is_available() else "cpu"
    check_attention_supported(params.model.attn_implementation, device_probe)  # flex: no CPU backward
    precision = resolve_precision(tp.precision, device_probe)  # bf16 on CPU only with AMX/AVX-512 BF16
    # the engine (DDP, FSDP2, DeepSpeed) comes from the launcher; engines.py enables it, on CPU too
    accelerator = engines.make_accelerator(tp, precision, run_dir, on_cpu=device_probe == "cpu")
    if tp.resume == "never":
        # a deliberate fresh start: no stale checkpoint, nor any result of the model that is gone, may
        # linger. One process deletes, after every process exists, and the others wait (deleting on
        # every rank before that raced)
        if accelerator.is_main_process:
            forget_trained_model(run_dir)
        accelerator.wait_for_everyone()
    if tp.num_threads and accelerator.device.type == "cpu":
        torch.set_num_threads(tp.num_threads)
    set_seed(params.seed)

    # data: domain (+ replay) sequences, held-out sets for in-loop evaluation
    tokenizer = load_tokenizer(params.model)
    _check_data(params, data_dir, tokenizer)
    # the train split is train.train_split ("control" for a control run): training_stream reads it
    splits, sampler = training_stream(data_dir, tp, params.seed, accelerator.process_index, accelerator.num_processes)
    train_split = splits["train"]
    # domain, general, registers (those eval.heldout_splits names): the in-loop points score what the evaluation does
    val = {name: PackedSplit(data_dir / name) for name in heldout_splits(data_dir, params.eval.heldout_splits)}

    # model and optimizer
    model = load_model(params.model, seed=params.seed)
    model.config.use_cache = False  # a cache disables the packed-sequence (per-document) attention mask
    if tp.gradient_checkpointing:
        model.activation_checkpointing_enable()
    # fused AdamW: one kernel per step instead of a dozen foreach passes (CPU too since torch 2.4)
    fused = {"on": True, "off": False}.get(tp.fused_adamw, True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tp.lr, betas=(tp.beta1, tp.beta2),
                                  weight_decay=tp.weight_decay, fused=fused)
    model, optimizer = accelerator.prepare(model, optimizer)
    pull = engines.L2Pull(accelerator, model, tp.l2_init_weight) if tp.l2_init_weight > 0 else None
    accelerator.register_for_checkpointing(sampler)
    unwrapped = accelerator.unwrap_model(model)
    # before compiling, which traces them: products oneDNN spreads badly over this CPU's threads, in row blocks
    # (not under FSDP / ZeRO-3: their sharded weights were never measured or tested with it)
    row_blocks = {} if engines.shards_parameters(accelerator) else row_blocks_for_training(
        unwrapped, tp.micro_batch_size * train_split.seq_len, accelerator.device.type, precision)
    compiling = compile_mode(tp.compile)
    step_model = compiled_for_training(model, compiling)  # the rest uses the eager module

    plan = StepPlan.from_params(tp, train_split.seq_len, accelerator.num_processes)
    attention = training_attention(params.model.attn_implementation, accelerator.device.type, precision,
                                   tp.micro_batch_size, train_split.seq_len, unwrapped.config)
    n_params = sum(p.numel() for p in unwrapped.parameters())
    repeats = sampler.repeat_warning(plan.total_steps * tp.grad_accum_steps)
    if repeats and accelerator.is_main_process:
        warnings.warn(f"{data_dir}: {repeats}", DataRepeatWarning, stacklevel=3)
    return TrainState(
        params=params, run_dir=run_dir, data_dir=data_dir, accelerator=accelerator, precision=precision,
        tokenizer=tokenizer, model=model, step_model=step_model, optimizer=optimizer, sampler=sampler,
        splits=splits, val=val, pull=pull, plan=plan,
        segment=plan.segment(tp), trajectory=trajectory_fingerprint(params, data_dir),
        trajectory_parts=trajectory_record(params, data_dir),
        fingerprint=run_fingerprint(params, data_dir), metrics_path=run_dir / "metrics.jsonl",
        n_params=n_params, flops_token=flops_per_token(unwrapped.config, n_params, train_split.seq_len),
        peak=peak_flops(accelerator.device.type),  # per device; None for an unknown GPU
        eval_copy=engines.EvalCopy(accelerator, model), compile_mode=compiling, attention=attention,
        row_blocks=row_blocks)


# -------------------------------------------------------------------------------------------- resume
def resume(state: TrainState) -> None:
    """Continue the latest checkpoint (same trajectory), or start a new schedule segment when the token
    budget grew since it was written (see schedules.py for why). Sets ``state.step``/``state.segment``."""
    tp, accelerator = state.params.train, state.accelerator
    resume_from = latest_resumable(state.run_dir) if tp.resume == "auto" else (
        None if tp.resume == "never" else json.loads((Path(tp.resume) / "checkpoint.json").read_text()) | {"path": tp.resume})
    if resume_from is not None and resume_from.get("trajectory_fingerprint") != state.trajectory:
        raise DataMismatch(_other_trajectory(resume_from, state.trajectory_parts))
    if resume_from is not None and (problem := resume_problem(resume_from, state.splits["train"].blocks)):
        raise DataMismatch(problem)
    if resume_from is not None:
        _refuse_other_world(resume_from, accelerator)
        accelerator.load_state(str(Path(resume_from["path"]) / "state"))
        state.step = step = resume_from["step"]
        old = Segment(**resume_from["segment"])
        state.segment = old if old.end == state.plan.total_steps else continuation(
            step, state.plan.total_steps, old, state.plan.warmup, tp.lr, tp.min_lr_ratio, tp.schedule,
            tp.decay_fraction, tp.decay_shape, tp.continue_with)
        if accelerator.is_main_process:
            _truncate_metrics(state.metrics_path, step)
            print(f"resuming from {resume_from['name']} (step {step}, {resume_from['tokens']:,} tokens)"
                  + ("" if state.segment is old else
                     f"; budget changed: new {state.segment.kind} segment {step}→{state.plan.total_steps}"))
    elif accelerator.is_main_process:
        state.metrics_path.unlink(missing_ok=True)
    if tp.trackers:
        accelerator.init_trackers(state.params.run_name, config={"lr": tp.lr, "tokens": tp.token_budget})


def _other_trajectory(checkpoint: dict, now: dict) -> str:
    """Why ``checkpoint`` cannot be continued with the parameters and data of now, naming what moved
    (``train.lr (0.0003 vs 0.0005)``, ``training data (…)`` when the data were prepared from other
    documents) where the checkpoint recorded its trajectory; older checkpoints get the general reason."""
    moved = trajectory_changes(checkpoint, now)
    what = (f"was trained with other parameters or data: {'; '.join(moved)} (checkpoint vs now)" if moved
            else "was trained with other parameters or data")
    return (f"{checkpoint['path']} {what}. Only train.token_budget and the milestone/eval/checkpoint intervals "
            "may change when resuming; use another run_name or resume: never")


def _refuse_other_world(checkpoint: dict, accelerator) -> None:
    """A checkpoint continues only with the processes and engine that wrote it: the optimizer state (and
    under FSDP the weights) is saved per process, and every process's RNG is restored. The sampler alone
    would carry over (it is global), the rest would not, so the run refuses instead of changing silently."""
    here = (accelerator.num_processes, engines.engine_name(accelerator))
    # checkpoints from before the world size was recorded were written by one process
    there = (checkpoint.get("num_processes", 1), checkpoint.get("engine", "single"))
    if here != there:
        raise DataMismatch(
            f"{checkpoint['path']} was written by {there[0]} process(es) ({there[1]}), this run has {here[0]} "
            f"({here[1]}): resume with `accelerate launch --num_processes {there[0]}` and the same engine, "
            "or start over with train.resume: never")


# ----------------------------------------------------------------------------------------------- fit
@dataclass
class StepResult:
    loss: float        # mean over the micro-steps of this process
    grad_norm: float
    lr: float
    seconds: float
    picks: list        # the last micro-batch's (split, index) rows: the replay share is logged from it


def fit(state: TrainState, progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """The training loop: step, log, evaluate and checkpoint on their token schedules, until the budget."""
    plan, tp, accelerator = state.plan, state.params.train, state.accelerator
    timer = _CompileTimer(state.compile_mode != "off")
    bar = _progress_bar(state) if progress and accelerator.is_main_process else None
    if state.step == 0:
        heldout = _log_eval(state)  # the base model's point on the curves
        if heldout is not None:
            store_heldout(base_heldout_path(state.run_dir), *heldout)
    state.model.train()
    while state.step < plan.total_steps:
        result = _train_step(state)
        state.step += 1
        _log_train(state, result, timer.observe(result.seconds), bar)
        last = state.step == plan.total_steps
        heldout = None
        if plan.eval_every and state.step % plan.eval_every == 0 and not last:
            heldout = _log_eval(state)
        if not last and (state.step in plan.milestone_steps or (plan.ckpt_every and state.step % plan.ckpt_every == 0)):
            _checkpoint(state, heldout=heldout)
        if stop_after_steps is not None and state.step >= stop_after_steps and not last:
            if bar is not None:
                bar.close()
            return {"stopped_at_step": state.step, "tokens": state.step * plan.tokens_per_step}
    _checkpoint(state, final=True, heldout=_log_eval(state))
    if bar is not None:
        bar.close()
    consistent = engines.ranks_consistent(accelerator, state.model)
    if tp.trackers:
        accelerator.end_training()
    return {"reused": False, "steps": state.step, "tokens": state.step * plan.tokens_per_step,
            "tokens_per_step": plan.tokens_per_step, "processes": accelerator.num_processes,
            "precision": state.precision, "attention": state.attention, "compile": state.compile_mode,
            "compile_s": timer.compile_s, "row_blocks": state.row_blocks,
            "ranks_consistent": consistent,
            "engine": engines.engine_name(accelerator)}


def _train_step(state: TrainState) -> StepResult:
    """One optimizer step: set the LR, accumulate micro-steps, clip, refuse a non-finite step, step."""
    tp, accelerator, model, optimizer = state.params.train, state.accelerator, state.model, state.optimizer
    lr = lr_at(state.step, state.segment)
    for group in optimizer.param_groups:
        group["lr"] = lr
    started = time.perf_counter()
    loss_sum = 0.0
    for _ in range(tp.grad_accum_steps):
        picks = state.sampler.next_batch()
        inputs = _batch(state, picks)
        # accumulate(): gradients sync (DDP/FSDP) and DeepSpeed steps only on the last micro-step;
        # accelerator.backward divides by the accumulation steps (DeepSpeed's engine does it itself)
        with accelerator.accumulate(model):
            # the kernel is chosen at the forward; the backward replays what it recorded
            with attention_as(model, state.attention), autocast(state.precision, accelerator.device.type):
                loss = causal_lm_loss(state.step_model, inputs["input_ids"], inputs.get("position_ids"),
                                      tp.loss_chunk_tokens)
            accelerator.backward(loss + state.pull.loss_term(model) if state.pull else loss)
        loss_sum += loss.detach().float().item()
    if state.pull:
        state.pull.add_to_gradients(model)
    # clip (DeepSpeed clipped inside its step and reports the norm), then the NaN/inf guard on the loss
    # *and* the gradients, agreed across processes: never step on a bad gradient, so no checkpoint ever
    # holds weights a bad step produced (DeepSpeed has stepped already: the guard stops before a checkpoint)
    grad_norm = clip_grad_norm(accelerator, model.parameters(), tp.grad_clip if tp.grad_clip else float("inf"))
    loss_value = _mean_loss_or_refuse(state, loss_sum / tp.grad_accum_steps, grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=loss_value, grad_norm=grad_norm, lr=lr,
                      seconds=time.perf_counter() - started, picks=picks)


def _batch(state: TrainState, picks: list[tuple[str, int]]) -> dict:
    """The micro-batch of these (split, index) rows as tensors on the device."""
    ids, pos = zip(*(state.splits[split][index] for split, index in picks))
    device = state.accelerator.device
    inputs = {"input_ids": torch.from_numpy(np.stack(ids)).to(device)}
    if state.params.train.per_document_attention:
        inputs["position_ids"] = torch.from_numpy(np.stack(pos)).to(device)
    return inputs


def _mean_loss_or_refuse(state: TrainState, loss: float, grad_norm: float) -> float:
    """The step's loss averaged over processes (what one process with the whole global batch would log),
    or TrainingDiverged when any process saw a non-finite loss or gradient norm. One all-reduce carries
    both, so no rank raises alone and leaves the others hanging in the next collective."""
    accelerator = state.accelerator
    finite = math.isfinite(loss) and math.isfinite(grad_norm)
    both = torch.tensor([loss if finite else 0.0, 0.0 if finite else 1.0], dtype=torch.float64,
                        device=accelerator.device)
    if accelerator.num_processes > 1:
        both = accelerator.reduce(both, reduction="sum")
    bad = int(both[1].item())
    if bad:
        step, tokens_per_step = state.step, state.plan.tokens_per_step
        raise TrainingDiverged(
            f"loss {loss:.4g}, gradient norm {grad_norm:.4g} at step {step + 1} "
            f"({(step + 1) * tokens_per_step:,} tokens; non-finite on {bad} process(es)): the step was "
            f"not taken; last good checkpoint: {(list_checkpoints(state.run_dir) or [{'name': 'none'}])[-1]['name']}")
    return loss if accelerator.num_processes == 1 else float(both[0].item()) / accelerator.num_processes


class _CompileTimer:
    """torch.compile compiles in the first step of the process: its excess over the next step is the cost."""

    def __init__(self, enabled: bool):
        self.enabled, self.first_step_s, self.compile_s = enabled, None, None

    def observe(self, seconds: float) -> float | None:
        """The compile time once, on the second step; None otherwise."""
        if not self.enabled:
            return None
        if self.first_step_s is None:
            self.first_step_s = seconds
        elif self.compile_s is None:
            self.compile_s = max(0.0, self.first_step_s - seconds)
            return self.compile_s
        return None


def _progress_bar(state: TrainState):
    plan = state.plan
    return tqdm(total=plan.total_steps * plan.tokens_per_step, initial=state.step * plan.tokens_per_step,
                unit=" tok", unit_scale=True, desc="training", mininterval=5.0)


def _replay_by_source(picks: list) -> dict[str, int]:
    """Replayed rows of a micro-batch per replay split (``replay`` = general, ``replay_<register>``), so a
    mixture's realised shares can be read back from ``metrics.jsonl``."""
    counts: dict[str, int] = {}
    for split, _ in picks:
        if split != "train":
            counts[split] = counts.get(split, 0) + 1
    return counts


def _log_train(state: TrainState, result: StepResult, compile_s: float | None, bar) -> None:
    tp, accelerator, plan = state.params.train, state.accelerator, state.plan
    tokens_per_s = plan.tokens_per_step / result.seconds
    if accelerator.is_main_process and (state.step % tp.log_every_steps == 0 or state.step == plan.total_steps):
        _append_jsonl(state.metrics_path, row := {
            "kind": "train", "step": state.step, "tokens": state.step * plan.tokens_per_step, "loss": result.loss,
            "lr": result.lr, "grad_norm": result.grad_norm, "tokens_per_s": tokens_per_s,
            "mfu": mfu(tokens_per_s / accelerator.num_processes, state.flops_token, state.peak),
            "mem_mb": _memory_mb(accelerator.device.type), "time_s": result.seconds,
            "replay_rows": sum(1 for s, _ in result.picks if s != "train"),
            **({"replay_by_source": by_source} if (by_source := _replay_by_source(result.picks)) else {}),
            **({"compile_s": compile_s} if compile_s is not None else {})})
        log_train(accelerator, row)  # to train.trackers (cpt_utils.tracking)
    if bar is not None:
        bar.update(plan.tokens_per_step)
        bar.set_postfix(loss=f"{result.loss:.3f}", lr=f"{result.lr:.2e}", refresh=False)


def _log_eval(state: TrainState) -> tuple[str, dict, float] | None:
    """The in-loop held-out point, on the main process; every process calls this (under FSDP it gathers
    the full weights). With ``train.eval_max_sequences: null`` it scores the whole held-out sets exactly as
    the checkpoint's evaluation would and returns (settings key, results, seconds) for ``heldout_eval`` to
    store beside the weights; a subset is only a curve point (None). Child runs (``in_loop_eval`` off) skip it."""
    accelerator, params = state.accelerator, state.params
    if not params.train.in_loop_eval:
        return None
    model = state.eval_copy.get()  # None off the main process
    stored = None
    if model is not None:
        started = time.perf_counter()
        if params.train.eval_max_sequences is None:  # the evaluation's own sets and settings: reusable
            results = score_heldout(params, model, state.tokenizer, state.data_dir, state.precision)
            stored = (heldout_fingerprint(params, state.data_dir, state.precision, accelerator.device.type), results,
                      time.perf_counter() - started)
            row = metrics_row(results)
        else:
            row = _evaluate(model, state.val, params, state.precision, state.tokenizer)
        _append_jsonl(state.metrics_path, {"kind": "eval", "step": state.step,
                                           "tokens": state.step * state.plan.tokens_per_step, **row})
        if params.train.trackers:
            accelerator.log(row, step=state.step)
    accelerator.wait_for_everyone()
    return stored


def _checkpoint(state: TrainState, final: bool = False, heldout: tuple[str, dict, float] | None = None) -> None:
    """Save the checkpoint, and beside it the held-out results of these weights when ``_log_eval`` made them."""
    plan = state.plan
    path = save_checkpoint(state.accelerator, state.model, state.tokenizer, state.run_dir, {
        "step": state.step, "tokens": state.step * plan.tokens_per_step, "milestone": state.step in plan.milestone_steps,
        "final": final, "params_fingerprint": state.fingerprint, "trajectory_fingerprint": state.trajectory,
        "trajectory": state.trajectory_parts,
        "segment": asdict(state.segment), "tokens_per_step": plan.tokens_per_step, "n_params": state.n_params,
        "num_processes": state.accelerator.num_processes, "engine": engines.engine_name(state.accelerator),
        "train_blocks": state.splits["train"].blocks,
        # a milestone a decay branch starts from keeps its optimizer state (checkpointing._prune)
        "keep_state": bool(state.params.train.decay_branch_fraction) and state.step in plan.milestone_steps and not final})
    if heldout is not None and state.accelerator.is_main_process:
        store_heldout(checkpoint_heldout_path(path), *heldout)


# --------------------------------------------------------------------------------------------- train
def train(params: ExperimentParams, run_dir: str | Path, data_dir: str | Path | None = None,
          progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Continue pre-training ``params.model`` on the prepared data; return a summary dict.

    ``stop_after_steps`` ends the run early without a final checkpoint, as a kill would (tests use it).
    """
    run_dir, data_dir = Path(run_dir), Path(data_dir or Path(run_dir) / "data")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "manifest.json").is_file():
        raise DataMismatch(f"{data_dir}: no manifest.json — run preprocessing first (notebook 02 or `cpt prepare`)")
    finished = _finished_run(params, run_dir, data_dir)
    if finished is not None:
        print(f"reusing finished training in {run_dir} ({finished['name']}, parameters unchanged)")
        return {"reused": True, **finished}
    state = setup(params, run_dir, data_dir)
    resume(state)
    return fit(state, progress=progress, stop_after_steps=stop_after_steps)


def main(params_path: str | None = None) -> None:
    """Entry point of ``cpt train PARAMS`` and ``python -m cpt_utils.train PARAMS``."""
    params_path = params_path or (sys.argv[1] if len(sys.argv) > 1 else None)
    if not params_path:
        raise SystemExit("usage: python -m cpt_utils.train PARAMS")
    params = load_params(params_path)
    configure_environment(offline=params.offline)
    summary = train(params, make_run_dir(params.run_name))
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
