"""The distributed engine a run uses (one process, DDP, FSDP2, DeepSpeed ZeRO-2) and what each needs.

``accelerate launch --config_file configs/accelerate/<engine>.yaml`` chooses the engine through
environment variables; ``Accelerator`` reads them. The training loop is the same for all engines; this
module holds the few places where they differ, so ``train.py`` does not branch on the engine:

- **DeepSpeed** takes its micro-batch, accumulation and clipping from the params (accelerate cannot infer
  the micro-batch without a dataloader) and steps inside ``accelerator.backward`` at the accumulation
  boundary that ``accelerator.accumulate`` marks.
- **FSDP** shards the parameters: the in-loop evaluation runs on a full copy gathered on the main process
  (a forward of the sharded model on one rank would wait forever for the others), the L2 pull compares
  each shard with its own initial shard (``L2Pull``), and the rank-consistency check compares gathered full weights.
- **CPU**: accelerate 1.15 enables FSDP only on accelerator devices (``AcceleratorState`` leaves
  ``MULTI_CPU`` alone) and its launcher drops FSDP/DeepSpeed with ``--cpu``. torch's FSDP2 runs on gloo, so
  when the environment asks for FSDP2 on CPU (tests, small machines) the state is switched to FSDP and
  accelerate's own FSDP2 preparation runs unchanged. DeepSpeed on CPU runs in one process only (see
  ``DEEPSPEED_CPU_REASON``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from transformers import AutoModelForCausalLM

from .errors import CptError
from .precision import accelerate_mixed_precision

DEEPSPEED_CPU_REASON = (
    "accelerate 1.15 sets up DeepSpeed only on accelerator devices: with several CPU processes its "
    "PartialState finds no backend and every process believes it is the only one (state.py), so "
    "multi-process DeepSpeed cannot run on CPU; one process runs DeepSpeed's CPU accelerator on gloo")


class EngineError(CptError, RuntimeError):
    pass


def requested_engine() -> str:
    """The engine the launcher asked for: ``fsdp``/``deepspeed`` from accelerate's variables, else ``ddp``."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "deepspeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    return "ddp"


def engine_name(accelerator: "Accelerator") -> str:
    """What actually runs: ``single``, ``ddp``, ``fsdp`` or ``deepspeed``."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return "deepspeed"
    if accelerator.distributed_type == DistributedType.FSDP:
        return "fsdp"
    return "ddp" if accelerator.num_processes > 1 else "single"


def make_accelerator(tp, precision: str, run_dir, on_cpu: bool) -> "Accelerator":
    """The Accelerator for this launch, with the engine asked for actually enabled (or a clear refusal)."""
    wanted = requested_engine()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if wanted == "deepspeed" and on_cpu and world > 1:
        raise EngineError(f"DeepSpeed with {world} processes on CPU: {DEEPSPEED_CPU_REASON}; use DDP on CPU")
    mixed = accelerate_mixed_precision(precision)
    _forget_another_precision(mixed)
    # cpu=True on a CPU machine: Accelerate only sets up multi-process (gloo) CPU training when told so;
    # DeepSpeed is set up only with cpu=False (it then uses its own CPU accelerator)
    accelerator = Accelerator(cpu=on_cpu and wanted != "deepspeed",
                              mixed_precision=mixed,
                              gradient_accumulation_steps=tp.grad_accum_steps,
                              log_with=tp.trackers or None, project_dir=str(run_dir))
    if wanted == "fsdp" and accelerator.distributed_type == DistributedType.MULTI_CPU:
        _fsdp2_on_gloo(accelerator)
    if wanted == "deepspeed" and accelerator.distributed_type != DistributedType.DEEPSPEED:
        raise EngineError("ACCELERATE_USE_DEEPSPEED is set but accelerate did not start DeepSpeed "
                          "(launch with torchrun or accelerate launch, not plain python)")
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        configure_deepspeed(accelerator.state.deepspeed_plugin.deepspeed_config, tp, accelerator.num_processes)
    return accelerator


def _forget_another_precision(mixed: str) -> None:
    """Let a second run in the same process (a notebook, the test suite) use another precision.

    Accelerate keeps one ``AcceleratorState`` per process and refuses a new ``Accelerator`` whose
    ``mixed_precision`` differs ("restart your runtime completely"). Training state lives in the run
    folder, not there, so that state is dropped; the process group (``PartialState``) is kept."""
    before = AcceleratorState._shared_state.get("_mixed_precision")
    if before is not None and before != mixed:
        AcceleratorState._reset_state(reset_partial_state=False)


def _fsdp2_on_gloo(accelerator: "Accelerator") -> None:
    """Switch a multi-process CPU state to FSDP2 (see the module docstring for why accelerate does not)."""
    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables, as Accelerator does on GPUs
    if plugin.fsdp_version != 2:
        raise EngineError("FSDP on CPU needs fsdp_version: 2 (FSDP_VERSION=2): FSDP1 has no CPU/gloo path")
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def configure_deepspeed(config: dict, tp, num_processes: int) -> dict:
    """Fill the DeepSpeed config from the params, in place: micro-batch (accelerate cannot infer it without
    a dataloader), accumulation (DeepSpeed steps at its boundary) and clipping (DeepSpeed clips inside its
    step). A value the accelerate config set explicitly must agree with the params."""
    wanted = {"train_micro_batch_size_per_gpu": tp.micro_batch_size,
              "gradient_accumulation_steps": tp.grad_accum_steps,
              "train_batch_size": tp.micro_batch_size * tp.grad_accum_steps * num_processes,
              "gradient_clipping": float(tp.grad_clip or 0.0)}
    for key, value in wanted.items():
        current = config.get(key, "auto")
        if current not in ("auto", None) and current != value:
            raise EngineError(f"DeepSpeed config {key}: {current} disagrees with the params ({value}); "
                              f"set it to auto (cpt fills it from train.*)")
        config[key] = value
    config.setdefault("zero_allow_untested_optimizer", True)  # torch's AdamW, not DeepSpeed's
    return config


def shards_parameters(accelerator: "Accelerator") -> bool:
    """Whether a process holds only part of each parameter (FSDP, ZeRO-3)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return False


def local(tensor: "torch.Tensor") -> "torch.Tensor":
    """This process's part of a parameter (its shard under FSDP2, the tensor itself otherwise)."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


class L2Pull:
    """The pull toward the base model, w·Σ‖θ − θ₀‖² (a forgetting mitigation, like EWC with unit Fisher).

    θ₀ is copied from the *prepared* model, so it has the parameters' device and sharding (under FSDP each
    process keeps its own shard; a full copy beside shards cannot be subtracted). Its gradient 2w(θ − θ₀)
    is added to the accumulated gradients once per optimizer step, before clipping: during the forward
    FSDP2 swaps shards for gathered tensors, so the term cannot go through autograd there, and each
    shard's gradient depends only on that shard, so no communication is needed. DeepSpeed steps inside
    ``backward``, so there the term is added to the loss instead (its parameters are whole under ZeRO-2)."""

    def __init__(self, accelerator: "Accelerator", model, weight: float):
        self.weight = weight
        self.initial = [local(p).detach().clone() for p in model.parameters()]
        self.in_loss = accelerator.distributed_type == DistributedType.DEEPSPEED

    def loss_term(self, model) -> "torch.Tensor | float":
        """What to add to each micro-step's loss (0 unless the engine steps inside backward)."""
        if not self.in_loss:
            return 0.0
        return self.weight * torch.stack([(p - p0).pow(2).sum() for p, p0 in zip(model.parameters(), self.initial)]).sum()

    def add_to_gradients(self, model) -> None:
        """Add 2w(θ − θ₀) to the accumulated gradients (after the last micro-step's backward)."""
        if self.in_loss:
            return
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), self.initial):
                if p.grad is not None:
                    local(p.grad).add_(local(p) - p0, alpha=2 * self.weight)


class EvalCopy:
    """The module the in-loop evaluation runs on, on the main process only.

    Unsharded engines evaluate the unwrapped module itself. Under FSDP a forward needs every rank, so the
    full weights are gathered (a collective: every process calls ``get``) into a plain copy on the main
    process, built once and refreshed at each evaluation."""

    def __init__(self, accelerator: "Accelerator", model):
        self.accelerator, self.model, self.copy = accelerator, model, None

    def get(self) -> Any:
        accelerator = self.accelerator
        unwrapped = accelerator.unwrap_model(self.model)
        if not shards_parameters(accelerator):
            return unwrapped if accelerator.is_main_process else None
        state_dict = accelerator.get_state_dict(self.model)  # full, on the main process
        if not accelerator.is_main_process:
            return None
        if self.copy is None:
            self.copy = AutoModelForCausalLM.from_config(unwrapped.config).to(accelerator.device)
        self.copy.load_state_dict(state_dict)
        return self.copy


def ranks_consistent(accelerator: "Accelerator", model) -> bool:
    """Every process must end with the same model; raise if not.

    Replicated engines (DDP, ZeRO-2) compare one checksum of each process's full weights. Under FSDP each
    process owns distinct shards, so there are no replicas to compare: the check gathers the full weights
    on every process and compares their checksums, which proves the shards form one model everywhere."""
    if accelerator.num_processes == 1:
        return True
    params = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in accelerator.unwrap_model(model).parameters()]
    total = torch.stack([p.detach().double().sum() for p in params]).sum()
    sums = accelerator.gather(total.reshape(1).to(accelerator.device))
    if not bool(torch.equal(sums, sums[0].expand_as(sums))):
        raise RuntimeError(f"processes ended with different weights: checksums {sums.tolist()}")
    return True
