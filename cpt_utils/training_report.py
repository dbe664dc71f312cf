"""Tables and figures for notebook 03, read from ``metrics.jsonl`` and the checkpoints of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .checkpointing import list_checkpoints
from .config import ExperimentParams
from .plots import PALETTE, label


def load_metrics(run_dir: str | Path):
    """``metrics.jsonl`` as two DataFrames: training steps and in-loop evaluations."""
    import pandas as pd  # lazy: pandas only where a table is built

    path = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame, frame
    return frame[frame.kind == "train"].dropna(axis=1, how="all"), frame[frame.kind == "eval"].dropna(axis=1, how="all")


def config_table(params: ExperimentParams, summary: dict):
    """The knobs that shape the run, with the token arithmetic spelled out."""
    import pandas as pd  # lazy: pandas only where a table is built

    tp = params.train
    per_step = summary.get("tokens_per_step") or tp.micro_batch_size * params.preprocess.seq_len * tp.grad_accum_steps
    rows = {
        "base model": f"{params.model.source}:{params.model.name}" if params.model.source != "tiny" else "tiny (from config)",
        "tokens per optimizer step": f"{tp.micro_batch_size} seq × {params.preprocess.seq_len} tokens × "
                                     f"{tp.grad_accum_steps} accumulation × {summary.get('processes', 1)} process(es) = {per_step:,}",
        "token budget": f"{tp.token_budget:,} tokens ≈ {int(np.ceil(tp.token_budget / per_step)):,} steps",
        "milestones": ", ".join(f"{m:,}" for m in tp.milestones) or "none",
        "schedule": f"{tp.schedule}, peak LR {tp.lr:g}, re-warm {tp.warmup_tokens:,} tokens, floor {tp.min_lr_ratio:g}× peak",
        "precision": summary.get("precision", tp.precision),
        "per-document attention": (f"{tp.per_document_attention} ({summary['attention']} kernel in training steps)"
                                   if "attention" in summary else tp.per_document_attention),
        "replay fraction": (f"{tp.replay_fraction:g} of each batch from "
                            + ", ".join(f"{name} {w:.0%}" for name, w in tp.replay_weights().items())
                            if tp.replay_fraction else 0),
        "L2 pull to initial weights": tp.l2_init_weight,
        "gradient checkpointing / compile": " / ".join(("yes" if v else "no") if isinstance(v, bool) else str(v)
                                                       for v in (tp.gradient_checkpointing, summary.get("compile", tp.compile))),
    }
    return pd.Series(rows, name="value").to_frame()


def checkpoint_table(run_dir: str | Path):
    import pandas as pd  # lazy: pandas only where a table is built

    rows = [{"checkpoint": c["name"], "step": c["step"], "tokens": f"{c['tokens']:,}",
             "milestone": c.get("milestone", False), "final": c.get("final", False),
             "resumable": (Path(c["path"]) / "state").is_dir()} for c in list_checkpoints(run_dir)]
    return pd.DataFrame(rows)


def fig_loss_lr(train_rows, milestones: list[int]):
    import matplotlib.pyplot as plt  # lazy: matplotlib only where a figure is drawn

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    a.plot(train_rows.tokens, train_rows.loss, color=PALETTE["domain"], alpha=0.35, label="per step")
    window = max(1, len(train_rows) // 20)
    a.plot(train_rows.tokens, train_rows.loss.rolling(window, min_periods=1).mean(), color=PALETTE["domain"],
           label=f"moving mean ({window} steps)")
    for m in milestones:
        a.axvline(m, color="grey", ls=":", lw=1)
    a.legend()
    label(a, "Training loss", "tokens seen", "cross-entropy (nats/token)")
    b.plot(train_rows.tokens, train_rows.lr, color=PALETTE["fit"])
    label(b, "Learning rate", "tokens seen", "learning rate")
    fig.tight_layout()
    return fig


def fig_validation(eval_rows):
    import matplotlib.pyplot as plt  # lazy: matplotlib only where a figure is drawn

    fig, ax = plt.subplots()
    for which in ("domain", "general"):
        col = f"val_{which}_loss"
        ax.errorbar(eval_rows.tokens, eval_rows[col], yerr=eval_rows[f"{col}_se"], marker="o", capsize=3,
                    color=PALETTE[which], label=f"{which} held-out")
    ax.legend()
    label(ax, "Held-out loss during training (±1 SE)", "tokens seen", "cross-entropy (nats/token)")
    return fig


def fig_throughput(train_rows):
    import matplotlib.pyplot as plt  # lazy: matplotlib only where a figure is drawn

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    a.plot(train_rows.tokens, train_rows.tokens_per_s, color=PALETTE["continued"])
    label(a, "Throughput", "tokens seen", "tokens per second")
    b.plot(train_rows.tokens, train_rows.mem_mb / 1024, color=PALETTE["variant"])
    label(b, "Memory", "tokens seen", "peak memory (GiB; RSS on CPU, allocated on GPU)")
    fig.tight_layout()
    return fig


def narrative(train_rows, eval_rows) -> str:
    first, last = eval_rows.iloc[0], eval_rows.iloc[-1]
    lines = []
    for which in ("domain", "general"):
        d = last[f"val_{which}_loss"] - first[f"val_{which}_loss"]
        se = float(np.hypot(last[f"val_{which}_loss_se"], first[f"val_{which}_loss_se"]))
        verdict = "within noise" if abs(d) < 2 * se else ("fell" if d < 0 else "rose")
        lines.append(f"- {which.capitalize()} held-out loss {verdict}: {first[f'val_{which}_loss']:.3f} → "
                     f"{last[f'val_{which}_loss']:.3f} nats/token (Δ {d:+.3f}, ±{se:.3f} unpaired SE; perplexity "
                     f"{first[f'val_{which}_ppl']:.1f} → {last[f'val_{which}_ppl']:.1f}).")
    steady = train_rows.iloc[min(len(train_rows) - 1, 2):]
    mfu = steady.mfu.astype(float).median()  # None (an unknown GPU's peak) reads as NaN
    mfu_text = f"{100 * mfu:.1f}% of the device's measured peak" if np.isfinite(mfu) else "unknown (no peak known for this device)"
    lines.append(f"- Throughput {steady.tokens_per_s.median():,.0f} tokens/s (median after warm-up), MFU "
                 f"{mfu_text}, peak memory {train_rows.mem_mb.max() / 1024:.2f} GiB.")
    return "\n".join(lines)
