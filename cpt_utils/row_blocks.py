"""The training step's bf16 Linear products in row blocks, where that is faster on this CPU and changes no bit.

Why: oneDNN's AMX matmul spreads some of a decoder layer's products badly over a few threads. On a
2-core AMX Xeon ``[1024, 1536] @ [1536, 576]`` (SmolLM2's MLP down projection, and the input gradient
of its gate/up projections) ran no faster on two threads than on one (1.07 vs 1.04 ms), while the same
product as two blocks of 512 rows took 0.63 ms; the attention's 576 × 576 projections gained as much.
Each output row is the same dot products whichever block it sits in, and where the split product
equals the whole one bit for bit (checked when planning: it does where K ≥ N here, not for the gate/up
forward), splitting changes no number — only the time. Measured in a step: see benchmarks/README.md,
"Row blocks".

The plan is measured once per training setup on the step's own shape (rows = micro-batch × seq_len): for
each distinct bias-free Linear shape, its forward and its input-gradient product, 1, 2 or 4 row blocks —
the fastest that is bit-identical and at least ``MIN_GAIN`` faster than whole. Only the training step
runs the blocks (gradients on, bf16 autocast, CPU, the planned number of rows): evaluation, fp32, GPUs
and any other shape keep ``nn.Linear``. ``CPT_ROW_BLOCKS=off`` turns it off (for A/B measurements).
"""

from __future__ import annotations

import statistics
import time

import torch

from .paths import switched_off
from .precision import cpu_multiplies_bf16

OPT_OUT = "CPT_ROW_BLOCKS"
BLOCKS = (2, 4)      # the row blocks tried against the whole product
MIN_GAIN = 1.05      # a split must be this much faster than the whole product to be used
_REPEATS, _WARMUP = 7, 2

Plan = dict[tuple[int, int], tuple[int, int]]  # (out, in) features -> (forward blocks, input-gradient blocks)


def wanted(device_type: str, precision: str) -> bool:
    """Row blocks are planned for a CPU training step under bf16 autocast on a CPU that multiplies bf16
    natively (AMX / AVX-512 BF16: oneDNN's partitioning is what they work around), on more than one thread."""
    return (not switched_off(OPT_OUT) and device_type == "cpu" and precision == "bf16" and torch.get_num_threads() > 1
            and cpu_multiplies_bf16())


def blocked_mm(a: torch.Tensor, b: torch.Tensor, blocks: int) -> torch.Tensor:
    """``a @ b`` computed ``blocks`` rows-blocks of ``a`` at a time (1: the whole product)."""
    if blocks <= 1:
        return a @ b
    size = a.shape[0] // blocks
    if torch.compiler.is_compiling():  # a graph gets the blocks and a concatenation inductor plans into one buffer
        return torch.cat([a[start:start + size] @ b for start in range(0, a.shape[0], size)])
    out = torch.empty(a.shape[0], b.shape[1], dtype=torch.promote_types(a.dtype, b.dtype), device=a.device)
    for start in range(0, a.shape[0], size):
        torch.mm(a[start:start + size], b, out=out[start:start + size])
    return out


def _fastest_identical(a: torch.Tensor, b: torch.Tensor) -> int:
    """The row blocks (1 = whole) that compute ``a @ b`` fastest here among those equal to it bit for bit."""
    rows = a.shape[0]
    whole = a @ b
    candidates = [1] + [n for n in BLOCKS if rows % n == 0 and torch.equal(blocked_mm(a, b, n), whole)]
    if len(candidates) == 1:
        return 1
    for _ in range(_WARMUP):
        for n in candidates:
            blocked_mm(a, b, n)
    times: dict[int, list[float]] = {n: [] for n in candidates}
    for _ in range(_REPEATS):  # interleaved, so a moment of load falls on every candidate alike
        for n in candidates:
            start = time.perf_counter()
            blocked_mm(a, b, n)
            times[n].append(time.perf_counter() - start)
    median = {n: statistics.median(t) for n, t in times.items()}
    best = min(median, key=median.get)
    return best if median[1] >= MIN_GAIN * median[best] else 1


def _splittable(module: torch.nn.Module, head: torch.nn.Module | None) -> bool:
    return type(module) is torch.nn.Linear and module.bias is None and module is not head


def plan_row_blocks(model: torch.nn.Module, rows: int, seed: int = 0) -> Plan:
    """For each distinct bias-free Linear shape of ``model`` (not its output head: ``losses`` runs that),
    the row blocks of its forward and input-gradient products at ``rows`` rows; shapes that gain nothing
    are left out. Measured on seeded random bf16 operands laid out as the step has them."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    shapes = sorted({(m.out_features, m.in_features) for m in model.modules() if _splittable(m, head)})
    generator = torch.Generator().manual_seed(seed)
    plan: Plan = {}
    with torch.no_grad():
        for out_features, in_features in shapes:
            def operand(*shape: int) -> torch.Tensor:
                return torch.randn(*shape, generator=generator).to(torch.bfloat16)
            weight = operand(out_features, in_features)
            forward = _fastest_identical(operand(rows, in_features), weight.t())       # x @ Wᵀ
            input_grad = _fastest_identical(operand(rows, out_features), weight)       # ∂y @ W
            if forward > 1 or input_grad > 1:
                plan[(out_features, in_features)] = (forward, input_grad)
    return plan


class _RowBlockLinear(torch.autograd.Function):
    """``x @ Wᵀ`` in bf16 (as autocast computes ``nn.Linear``) with its forward and input-gradient products
    in row blocks; the weight gradient is the whole product, as autograd computes it."""

    @staticmethod
    def forward(ctx, x, weight, forward_blocks, input_grad_blocks):  # noqa: D102 (autograd API)
        x2 = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        weight16 = weight.to(torch.bfloat16)
        ctx.save_for_backward(x2, weight16)
        ctx.x_shape, ctx.input_grad_blocks = x.shape, input_grad_blocks
        return blocked_mm(x2, weight16.t(), forward_blocks).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_y):  # noqa: D102 (autograd API)
        x2, weight16 = ctx.saved_tensors
        grad2 = grad_y.reshape(-1, grad_y.shape[-1]).to(torch.bfloat16)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:  # autograd casts both to their inputs' dtypes, as autocast's casts would
            grad_x = blocked_mm(grad2, weight16, ctx.input_grad_blocks).view(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            grad_weight = grad2.t() @ x2
        return grad_x, grad_weight, None, None


class RowBlockLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose training-step products run in the planned row blocks (``row_blocks``:
    rows, forward blocks, input-gradient blocks); anything else is ``nn.Linear``'s own forward."""

    row_blocks: tuple[int, int, int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        rows, forward_blocks, input_grad_blocks = self.row_blocks
        if (torch.is_grad_enabled() and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16 and x.numel() == rows * x.shape[-1]):
            return _RowBlockLinear.apply(x, self.weight, forward_blocks, input_grad_blocks)
        return super().forward(x)


def use_row_blocks(model: torch.nn.Module, plan: Plan, rows: int) -> int:
    """Switch ``model``'s planned Linear layers to ``RowBlockLinear`` in place (same parameters, same
    state dict); the number switched."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    switched = 0
    for module in model.modules():
        blocks = plan.get((getattr(module, "out_features", None), getattr(module, "in_features", None)))
        if blocks and _splittable(module, head):
            module.__class__ = RowBlockLinear
            module.row_blocks = (rows, *blocks)
            switched += 1
    return switched


def row_blocks_for_training(model: torch.nn.Module, rows: int, device_type: str, precision: str) -> dict[str, list[int]]:
    """Plan and switch on the row blocks for a training step of ``rows`` rows where ``wanted``; what was
    chosen, ``{"576x1536": [forward blocks, input-gradient blocks]}`` (empty when nothing was)."""
    if not wanted(device_type, precision):
        return {}
    plan = plan_row_blocks(model, rows)
    use_row_blocks(model, plan, rows)
    return {f"{out}x{inp}": list(blocks) for (out, inp), blocks in plan.items()}
