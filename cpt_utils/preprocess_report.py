"""Tables and figures for notebook 02, read from ``manifest.json`` and the packed splits.

Kept apart from ``preprocess`` so that producing data and describing it stay separate jobs: the
notebook can describe data prepared earlier by ``cpt prepare`` or on another machine.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np

from .packing import SPLITS, open_split
from .plots import PALETTE, label

#: What each stage of preprocessing is, and the parameter that controls it (for reports and errors).
STAGES: dict[str, tuple[str, str]] = {
    "unreadable": ("unreadable records", "the input files"),
    "empty": ("filter 'empty' (nothing left after normalisation)", "preprocess.normalize"),
    "binary": ("filter 'binary' (undecodable or binary text)", "always on"),
    "word_count": ("filter 'word_count'", "preprocess.quality.min_words/max_words"),
    "mean_word_length": ("filter 'mean_word_length'", "preprocess.quality.min/max_mean_word_length"),
    "symbol_ratio": ("filter 'symbol_ratio'", "preprocess.quality.max_symbol_ratio"),
    "alpha_words": ("filter 'alpha_words'", "preprocess.quality.min_alpha_word_ratio"),
    "duplicate_lines": ("filter 'duplicate_lines'", "preprocess.quality.max_duplicate_line_fraction"),
    "repeated_ngrams": ("filter 'repeated_ngrams'", "preprocess.quality.max_top_ngram_fraction"),
    "boilerplate": ("filter 'boilerplate'", "preprocess.quality.max_boilerplate_line_fraction"),
    "exact": ("exact-duplicate removal", "preprocess.dedup.exact"),
    "near": ("near-duplicate removal", "preprocess.dedup.near"),
}


def stage_label(stage: str) -> str:
    """'near-duplicate removal (preprocess.dedup.near)': what removed documents, and the knob."""
    what, key = STAGES.get(stage, (f"filter '{stage}'", "preprocess.quality"))
    return f"{what} ({key})"


def removals(filters: dict, dedup: dict) -> list[tuple[str, int]]:
    """Documents removed per stage after reading, in pipeline order (stages that removed none too)."""
    out = [(name, n) for name, n in filters["removed"].items()]
    return out + [("exact", dedup["exact_removed"]), ("near", dedup["near_removed"])]


def corpus_summary(which: str, corpus: dict) -> list[str]:
    """What one corpus lost at each stage, as terminal lines: unreadable records by reason with up to
    three places (file:line) each, every filter's removals with an example, exact and near duplicates."""
    f, d, u = corpus["filters"], corpus["dedup"], corpus["unreadable"]
    kept = f["kept"] - d["exact_removed"] - d["near_removed"]
    lines = [f"data.{which}: {f['seen']:,} documents read, {kept:,} kept"
             + (f"; {u['total']:,} unreadable records skipped" if u["total"] else "")]
    where = u.get("where_by_reason", {})
    for reason, n in sorted(u["by_reason"].items(), key=lambda kv: -kv[1]):
        places = ", ".join(where.get(reason, []))
        lines.append(f"  unreadable: {n:,} × {reason}" + (f" (e.g. {places})" if places else ""))
    for stage, n in removals(f, d):
        example = ""
        if stage in f.get("examples", {}) and f["examples"][stage]:
            ex = f["examples"][stage][0]
            example = f" (e.g. {ex['id']}: {ex['reason']})"
        lines.append(f"  removed {n:>8,} by {stage_label(stage)}{example}")
    return lines


def drop_summary(manifest: dict) -> str:
    """The whole preprocessing step's losses, as printed by ``cpt prepare`` and shown in notebook 02."""
    return "\n".join(line for which, c in manifest["corpora"].items() for line in corpus_summary(which, c))


def filter_table(manifest: dict):
    """Documents removed per filter and per corpus, as counts and shares of documents seen."""
    import pandas as pd  # lazy: heavy; only the notebook's tables need pandas

    rows = []
    for which, c in manifest["corpora"].items():
        seen = max(1, c["filters"]["seen"])
        steps = [("unreadable records", c["unreadable"]["total"])]
        steps += [(f"filter: {k}", v) for k, v in c["filters"]["removed"].items()]
        steps += [("exact duplicates", c["dedup"]["exact_removed"]), ("near duplicates", c["dedup"]["near_removed"])]
        for step, n in steps:
            rows.append({"corpus": which, "step": step, "removed": n, "% of documents": round(100 * n / seen, 2)})
        rows.append({"corpus": which, "step": "documents read", "removed": c["filters"]["seen"], "% of documents": 100.0})
    return pd.DataFrame(rows).pivot_table(index="step", columns="corpus", values=["removed", "% of documents"],
                                          aggfunc="first", fill_value=0)


def removed_examples(manifest: dict) -> list[dict]:
    return [{"corpus": which, "filter": name, **ex}
            for which, c in manifest["corpora"].items()
            for name, examples in c["filters"]["examples"].items() for ex in examples]


def cluster_table(manifest: dict):
    """Near-duplicate clusters: the kept document and the ones dropped as its near-copies."""
    import pandas as pd  # lazy: heavy; only the notebook's tables need pandas

    rows = [{"corpus": which, "kept": c["kept"], "removed": r["id"], "removed text": r["text"]}
            for which, w in manifest["corpora"].items() for c in w["dedup"]["clusters"] for r in c["removed"]]
    return pd.DataFrame(rows, columns=["corpus", "kept", "removed", "removed text"])


def split_table(manifest: dict):
    import pandas as pd  # lazy: heavy; only the notebook's tables need pandas

    rows = {name: {"sequences": s["num_sequences"], "tokens": s["num_tokens"], "documents": s["documents"],
                   "tail tokens dropped": s["dropped_tail_tokens"], "padding tokens": s.get("padding_tokens", 0)}
            for name, s in manifest["splits"].items()}
    return pd.DataFrame(rows).T.astype(int)  # counts: the display adds thousands separators


def throughput_table(manifest: dict):
    """How fast the whole step ran: documents read, tokens tokenized, seconds, rates (wall clock)."""
    import pandas as pd  # lazy: heavy; only the notebook's tables need pandas

    docs = sum(c["filters"]["seen"] + c["unreadable"]["total"] for c in manifest["corpora"].values())
    tokens = sum(c["tokens_tokenized"] for c in manifest["corpora"].values())
    seconds, load = manifest["seconds"], manifest.get("tokenizer_load_seconds", 0.0)
    rows = {"records read": f"{docs:,}", "tokens tokenized (incl. held-out)": f"{tokens:,}",
            "wall time": f"{seconds:.1f} s (of which loading the tokenizer {load:.1f} s)",
            "throughput, end to end": f"{tokens / max(seconds, 1e-9):,.0f} tokens/s",
            "throughput, streaming part": f"{tokens / max(seconds - load, 1e-9):,.0f} tokens/s",
            "documents per second, end to end": f"{docs / max(seconds, 1e-9):,.0f}"}
    return pd.DataFrame({"value": rows})


def document_lengths(run_dir: Path, max_documents: int = 200_000) -> dict[str, np.ndarray]:
    """Tokens per packed document (separator included) for each split, from ``documents.jsonl``;
    at most ``max_documents`` per split are read (enough for a histogram, bounded memory)."""
    out = {}
    for split in SPLITS:
        path = Path(run_dir) / "data" / split / "documents.jsonl"
        with open(path, encoding="utf-8") as fh:
            out[split] = np.fromiter((json.loads(line)["tokens"] for line in islice(fh, max_documents)), np.int64)
    return out


def fig_document_lengths(lengths: dict[str, np.ndarray], seq_len: int):
    """Document lengths per split on a log scale, with the sequence length marked."""
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    fig, ax = plt.subplots()
    present = [v for v in lengths.values() if len(v)]
    shortest = min((int(v.min()) for v in present), default=1)
    longest = max((int(v.max()) for v in present), default=seq_len)
    bins = np.logspace(np.log10(max(1, shortest) * 0.9), np.log10(max(longest, seq_len) * 1.1), 40)
    colours = {"train": PALETTE["domain"], "val_domain": PALETTE["domain"], "replay": PALETTE["general"],
               "val_general": PALETTE["general"]}
    for split, values in lengths.items():
        if len(values):
            ax.hist(values, bins=bins, weights=np.full(len(values), 100 / len(values)), histtype="step",
                    linewidth=1.6, color=colours[split],
                    linestyle="--" if split.startswith("val") else "-", label=f"{split} ({len(values):,} docs)")
    ax.axvline(seq_len, color="black", linewidth=1)
    ax.annotate(f"sequence = {seq_len} tokens", (seq_len, 0.95), xycoords=("data", "axes fraction"),
                xytext=(4, 0), textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:,.0f}")
    ax.xaxis.set_minor_formatter(lambda x, _: f"{x:,.0f}" if str(int(round(x)))[0] in "25" else "")
    ax.legend(fontsize=8)
    label(ax, "Document lengths after cleaning, per split", "tokens per document (log scale)",
          "documents (% of the split per bin)")
    return fig


def fig_split_tokens(manifest: dict):
    """Tokens written per split: what training, replay and the two held-out evaluations can use."""
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    fig, ax = plt.subplots(figsize=(7.5, 2.8))
    names = list(manifest["splits"])
    tokens = [manifest["splits"][n]["num_tokens"] for n in names]
    colours = [PALETTE["general"] if n in ("replay", "val_general") else PALETTE["domain"] for n in names]
    bars = ax.barh(names, tokens, color=colours)
    ax.bar_label(bars, labels=[f"{t:,}" for t in tokens], padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.2)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:,.0f}")
    label(ax, "Tokens per split", "tokens (packed, full sequences only)", "split")
    return fig


def sequence_composition(run_dir: Path, split: str = "train", max_sequences: int = 5000) -> dict:
    """Documents per sequence and document-fragment lengths: what per-document attention sees."""
    data = open_split(run_dir, split)
    docs_per_seq, fragments = [], []
    for i in range(min(len(data), max_sequences)):
        _, pos = data[i]
        starts = np.flatnonzero(pos == 0)
        docs_per_seq.append(len(starts))
        fragments.extend(np.diff(np.append(starts, len(pos))).tolist())
    return {"docs_per_sequence": np.asarray(docs_per_seq), "fragment_lengths": np.asarray(fragments),
            "seq_len": data.seq_len}


def fig_filters(manifest: dict):
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    fig, ax = plt.subplots()
    # pipeline order, top to bottom: unreadable records, each filter in the order it runs, then dedup
    steps = list(dict.fromkeys(k for c in manifest["corpora"].values() for k in c["filters"]["removed"]))
    labels = ["unreadable"] + [f"filter: {s}" for s in steps] + ["exact duplicates", "near duplicates"]
    width = 0.4
    for j, (which, c) in enumerate(manifest["corpora"].items()):
        seen = max(1, c["filters"]["seen"])
        counts = [c["unreadable"]["total"]] + [c["filters"]["removed"].get(s, 0) for s in steps]
        counts += [c["dedup"]["exact_removed"], c["dedup"]["near_removed"]]
        y = np.arange(len(labels)) + (j - 0.5) * width
        ax.barh(y, [100 * n / seen for n in counts], height=width, color=PALETTE.get(which), label=which)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.legend()
    label(ax, "What cleaning removed", "documents removed (% of documents read)", "step")
    return fig


def fig_composition(composition: dict):
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    d = composition["docs_per_sequence"]
    a.hist(d, bins=np.arange(0.5, d.max() + 1.5), color=PALETTE["domain"])
    label(a, "Documents per packed sequence", "documents (fragments) in the sequence", "sequences")
    f = composition["fragment_lengths"]
    b.hist(f, bins=40, color=PALETTE["domain"])
    label(b, f"Fragment lengths (sequence = {composition['seq_len']} tokens)", "tokens per document fragment", "fragments")
    fig.tight_layout()
    return fig


def narrative(manifest: dict, composition: dict) -> str:
    train, val_d, val_g, replay = (manifest["splits"][s] for s in ("train", "val_domain", "val_general", "replay"))
    kept = {w: c["filters"]["kept"] - c["dedup"]["exact_removed"] - c["dedup"]["near_removed"]
            for w, c in manifest["corpora"].items()}
    d = composition["docs_per_sequence"]
    return "\n".join([
        f"- Domain: {kept['domain']:,} of {manifest['corpora']['domain']['filters']['seen']:,} documents survive "
        f"cleaning and deduplication; general: {kept['general']:,} of {manifest['corpora']['general']['filters']['seen']:,}.",
        f"- Training has **{train['num_tokens']:,} domain tokens** ({train['num_sequences']:,} sequences of "
        f"{manifest['seq_len']}); replay has {replay['num_tokens']:,} general tokens; the held-out sets have "
        f"{val_d['num_tokens']:,} (domain) and {val_g['num_tokens']:,} (general) tokens from documents never trained on.",
        f"- A sequence holds {d.mean():.1f} documents on average (median {np.median(d):.0f}): without per-document "
        "attention, most tokens would attend across unrelated documents.",
        f"- Throughput: {manifest['tokens_per_second']:,.0f} tokens/s end to end ({manifest['seconds']:.1f} s), "
        "including cleaning and deduplication.",
    ])


# ------------------------------------------------------------------------------------ held-out sets
def _composition_text(composition: dict[str, int], top: int = 4) -> str:
    """'Arts 9, People 7, History 5, +3 more (4)': the largest groups of a held-out set."""
    items = list(composition.items())
    text = ", ".join(f"{group} {n}" for group, n in items[:top])
    rest = items[top:]
    return text + (f", +{len(rest)} more ({sum(n for _, n in rest)})" if rest else "")


def _held_out_flags(entry: dict) -> list[str]:
    """What a reader must know before trusting a held-out set's SE."""
    flags = []
    if entry.get("too_few_for_se"):
        flags.append("too few documents for a reliable SE")
    if entry.get("corpus_had_fewer"):
        flags.append("corpus had fewer candidates than the cap")
    if not entry.get("whole_stream_read", True):
        flags.append(f"sample of the {entry['documents_read']:,} documents read")
    return flags


def held_out_lines(manifest: dict) -> list[str]:
    """One terminal line per held-out set (``cpt prepare``): documents, composition, caveats. Data
    prepared before held-out samples were recorded give no lines."""
    lines = []
    for split, entry in manifest.get("held_out", {}).items():
        flags = _held_out_flags(entry)
        lines.append(f"{split:12s} held out {entry['documents']:>4,} of {entry['candidates_seen']:,} candidates: "
                     f"{_composition_text(entry['composition'])}" + (f" [{'; '.join(flags)}]" if flags else ""))
    return lines


def held_out_rows(manifest: dict) -> list[dict[str, str]]:
    """The index's short table: set, documents, composition, caveats (empty for older data)."""
    return [{"set": split, "documents": f"{e['documents']:,} of {e['candidates_seen']:,} candidates",
             "composition": _composition_text(e["composition"]), "caveats": "; ".join(_held_out_flags(e)) or "none"}
            for split, e in manifest.get("held_out", {}).items()]


def held_out_table(manifest: dict):
    """Each held-out set: documents kept, candidates seen, the cap, its largest groups and the caveats."""
    import pandas as pd  # lazy: heavy; only the notebook's tables need pandas

    rows = {split: {"documents": e["documents"], "candidates seen": e["candidates_seen"],
                    "cap (val_max_docs)": "none" if e["cap"] is None else e["cap"],
                    "groups": len(e["composition"]), "composition": _composition_text(e["composition"]),
                    "padding tokens": e.get("padding_tokens", 0), "read in": e["stream_order"],
                    "caveats": "; ".join(_held_out_flags(e)) or "none"}
            for split, e in manifest.get("held_out", {}).items()}
    return pd.DataFrame(rows).T


def training_composition(manifest: dict) -> dict[str, dict[str, int]]:
    """Documents packed into training (train, replay) by topic or source, per corpus."""
    return {which: c.get("trained_composition", {}) for which, c in manifest["corpora"].items()}


def fig_held_out_composition(manifest: dict, top: int = 8):
    """One panel per held-out set: documents per topic (or source), largest first, the rest pooled.
    A set drawn from one topic shows as one bar: the evidence that the sample is spread."""
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    sets = manifest.get("held_out", {})
    cols = min(3, max(1, len(sets)))
    rows = -(-max(1, len(sets)) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(sets):]:
        ax.set_visible(False)
    colours = {"val_domain": PALETTE["domain"], "val_general": PALETTE["general"]}  # registers: grey
    for ax, (split, entry) in zip(axes.flat, sets.items()):
        items = list(entry["composition"].items())
        shown = items[:top] + ([("other", sum(n for _, n in items[top:]))] if len(items) > top else [])
        colour = colours.get(split, PALETTE["base"])
        ax.barh([g[:28] for g, _ in shown], [n for _, n in shown], color=colour)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        label(ax, f"{split}: {entry['documents']} documents", "documents in the held-out set", "topic or source")
    fig.tight_layout()
    return fig
