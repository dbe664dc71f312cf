"""Tables and figures for notebook 02, read from ``manifest.json`` and the packed splits.

Kept apart from ``preprocess`` so that producing data and describing it stay separate jobs: the
notebook can describe data prepared earlier by ``cpt prepare`` or on another machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .packing import SPLITS, open_split


def filter_table(manifest: dict):
    """Documents removed per filter and per corpus, as counts and shares of documents seen."""
    import pandas as pd

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
    import pandas as pd

    rows = [{"corpus": which, "kept": c["kept"], "removed": r["id"], "removed text": r["text"]}
            for which, w in manifest["corpora"].items() for c in w["dedup"]["clusters"] for r in c["removed"]]
    return pd.DataFrame(rows, columns=["corpus", "kept", "removed", "removed text"])


def split_table(manifest: dict):
    import pandas as pd

    rows = {name: {"sequences": s["num_sequences"], "tokens": s["num_tokens"], "documents": s["documents"],
                   "tail tokens dropped": s["dropped_tail_tokens"]} for name, s in manifest["splits"].items()}
    return pd.DataFrame(rows).T.map(lambda v: f"{int(v):,}")


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
    import matplotlib.pyplot as plt

    from .plots import PALETTE, label

    fig, ax = plt.subplots()
    steps = sorted({k for c in manifest["corpora"].values() for k in c["filters"]["removed"]})
    labels = [f"filter: {s}" for s in steps] + ["exact duplicates", "near duplicates", "unreadable"]
    width = 0.4
    for j, (which, c) in enumerate(manifest["corpora"].items()):
        seen = max(1, c["filters"]["seen"])
        counts = [c["filters"]["removed"].get(s, 0) for s in steps]
        counts += [c["dedup"]["exact_removed"], c["dedup"]["near_removed"], c["unreadable"]["total"]]
        y = np.arange(len(labels)) + (j - 0.5) * width
        ax.barh(y, [100 * n / seen for n in counts], height=width, color=PALETTE.get(which), label=which)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.legend()
    label(ax, "What cleaning removed", "documents removed (% of documents read)", "step")
    return fig


def fig_composition(composition: dict):
    import matplotlib.pyplot as plt

    from .plots import PALETTE, label

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
