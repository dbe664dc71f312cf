"""Corpus exploration for notebook 01: the domain and general corpora side by side.

Everything is measured with the *base model's* tokenizer, because token counts and fertility decide the
training budget and how well the model's vocabulary already fits the domain. The result is one JSON file
(``runs/<run>/data/explore.json``) so the notebook, the index page and later analysis read the same
numbers; it is reused while the parameters it depends on are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .atomic import atomic_write_json
from .config import ExperimentParams, step_fingerprint
from .corpora import open_corpus
from .modeling import load_tokenizer, model_id
from .plots import PALETTE, label

WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]*")
STOPWORDS = frozenset(
    "the of and in to a is as was for by on with that from at an are or it its which be his he this were "
    "has have also been their not but they one first other most can who after into more than s her she "
    "between during such these may used known two there all had many some new them over where while "
    "when would only about up under its both".split()
)


def quality_signals(text: str) -> dict[str, float]:
    """Cheap per-document signals of the kind quality filters threshold (Gopher/C4 style)."""
    words = text.split()
    n_words = len(words)
    chars = max(1, len(text))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    symbols = sum(text.count(s) for s in ("#", "...", "…", "{", "}", "<", ">", "|"))
    return {
        "words": n_words,
        "mean_word_length": float(np.mean([len(w) for w in words])) if words else 0.0,
        "alpha_word_ratio": sum(any(c.isalpha() for c in w) for w in words) / max(1, n_words),
        "digit_char_ratio": sum(c.isdigit() for c in text) / chars,
        "non_ascii_char_ratio": sum(ord(c) > 127 for c in text) / chars,
        "symbol_to_word_ratio": symbols / max(1, n_words),
        "duplicate_line_fraction": 1 - len(set(lines)) / len(lines) if lines else 0.0,
    }


def _minhash_duplicate_rate(texts: list[str], threshold: float, num_perm: int, shingle: int) -> float:
    """Share of documents with at least one near-duplicate (MinHash LSH, word shingles)."""
    from datasketch import MinHash, MinHashLSH  # lazy: heavy (scipy); only near-duplicate search needs it

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dup = 0
    for i, text in enumerate(texts):
        words = text.lower().split()
        shingles = {" ".join(words[j:j + shingle]) for j in range(max(1, len(words) - shingle + 1))}
        mh = MinHash(num_perm=num_perm)
        mh.update_batch([s.encode() for s in shingles])
        if lsh.query(mh):
            dup += 1
        lsh.insert(str(i), mh)
    return dup / max(1, len(texts))


def _summary(values: list[float] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"mean": math.nan, "median": math.nan, "p05": math.nan, "p95": math.nan, "max": math.nan}
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "p05": float(np.percentile(arr, 5)),
            "p95": float(np.percentile(arr, 95)), "max": float(arr.max())}


def corpus_statistics(texts: list[str], tokenizer, params: ExperimentParams, batch_size: int = 256) -> dict:
    """Counts, length distributions, fertility, duplicates and quality signals of one corpus."""
    token_lengths: list[int] = []
    token_ids_used: set[int] = set()
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], add_special_tokens=False)["input_ids"]
        for ids in encoded:
            token_lengths.append(len(ids))
            token_ids_used.update(ids)
    word_lengths = [len(t.split()) for t in texts]
    signals = [quality_signals(t) for t in texts]
    exact_hashes = Counter(hashlib.sha1(" ".join(t.lower().split()).encode()).hexdigest() for t in texts)
    dd = params.preprocess.dedup
    total_tokens, total_words = int(sum(token_lengths)), int(sum(word_lengths))
    return {
        "documents": len(texts),
        "tokens": total_tokens,
        "words": total_words,
        "characters": int(sum(len(t) for t in texts)),
        "empty_documents": sum(1 for t in texts if not t.strip()),
        "fertility_tokens_per_word": total_tokens / max(1, total_words),
        "bytes_per_token": sum(len(t.encode()) for t in texts) / max(1, total_tokens),
        "tokens_per_document": _summary(token_lengths),
        "words_per_document": _summary(word_lengths),
        "token_lengths": token_lengths,
        "distinct_token_ids": len(token_ids_used),
        "exact_duplicate_rate": sum(n - 1 for n in exact_hashes.values()) / max(1, len(texts)),
        "near_duplicate_rate": _minhash_duplicate_rate(texts, dd.threshold, dd.num_perm, dd.shingle_size),
        "quality": {key: _summary([s[key] for s in signals]) for key in signals[0]} if signals else {},
        "quality_per_document": {key: [round(s[key], 4) for s in signals] for key in signals[0]} if signals else {},
    }


def word_counts(texts: list[str]) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        counts.update(w.lower() for w in WORD_RE.findall(text))
    return counts


def distinctive_terms(domain: Counter, general: Counter, top: int = 25, min_count: int = 5) -> list[dict]:
    """Words most characteristic of the domain: log-odds ratio with an informative Dirichlet prior
    (Monroe, Colaresi & Quinn 2008), which does not over-rank rare words the way raw ratios do."""
    prior = domain + general
    a0, n_d, n_g = sum(prior.values()), sum(domain.values()), sum(general.values())
    rows = []
    for word, a_w in prior.items():
        if word in STOPWORDS or domain[word] < min_count:
            continue
        y_d, y_g = domain[word], general[word]
        delta = math.log((y_d + a_w) / (n_d + a0 - y_d - a_w)) - math.log((y_g + a_w) / (n_g + a0 - y_g - a_w))
        var = 1 / (y_d + a_w) + 1 / (y_g + a_w)
        rows.append({"term": word, "z": delta / math.sqrt(var), "domain_count": y_d, "general_count": y_g})
    return sorted(rows, key=lambda r: r["z"], reverse=True)[:top]


def vocabulary_overlap(domain: Counter, general: Counter) -> dict:
    d, g = set(domain), set(general)
    covered = sum(n for w, n in domain.items() if w in g)
    return {
        "domain_word_types": len(d), "general_word_types": len(g), "shared_word_types": len(d & g),
        "jaccard": len(d & g) / max(1, len(d | g)),
        "domain_tokens_covered_by_general_vocab": covered / max(1, sum(domain.values())),
    }


def _load_texts(params: ExperimentParams, which: str) -> tuple[list[str], list[dict], dict]:
    """A uniform sample of ``explore_max_docs`` documents (reservoir sampling, fixed seed).

    Taking the first N would follow the file's order (the packaged corpus is sorted by topic and title,
    a hub stream by crawl): a biased sample. The packaged Wikipedia is read in the same seeded
    permutation as preprocessing, so its first 10 × N documents are already a random sample; the
    reservoir only looks at those, so a streamed FineWeb-Edu is not read to the end just to describe it.
    """
    spec = getattr(params.data, which)
    base = Path(params.source_path).parent if params.source_path else None
    stream = open_corpus(spec, base_dir=base, name=which, seed=params.seed)
    limit = params.data.explore_max_docs
    rng = np.random.default_rng(params.seed)
    sample: list[tuple[str, dict]] = []
    for seen, doc in enumerate(stream):
        item = (doc.text, {"id": doc.id, **doc.meta})
        if limit is None or len(sample) < limit:
            sample.append(item)
        elif seen >= 10 * limit:
            break
        else:
            slot = int(rng.integers(0, seen + 1))
            if slot < limit:
                sample[slot] = item
    info = {"description": stream.describe(), "unreadable": stream.problems.as_dict(),
            "documents_seen": stream.documents_read}
    return [t for t, _ in sample], [m for _, m in sample], info


def explore(params: ExperimentParams, run_dir: Path, force: bool = False) -> dict:
    """Compute (or reuse) the corpus statistics and write ``data/explore.json``."""
    out = Path(run_dir) / "data" / "explore.json"
    fingerprint = step_fingerprint(params, "explore")
    if out.is_file() and not force:
        cached = json.loads(out.read_text())
        if cached.get("fingerprint") == fingerprint:
            print(f"reusing corpus statistics from {out} (parameters unchanged)")
            return cached

    started = time.perf_counter()
    tokenizer = load_tokenizer(params.model)
    result: dict = {"fingerprint": fingerprint, "tokenizer": model_id(params.model), "corpora": {}}
    words: dict[str, Counter] = {}
    examples: dict[str, list[dict]] = {}
    for which in ("domain", "general"):
        texts, metas, info = _load_texts(params, which)
        if not texts:
            raise ValueError(f"data.{which}: the corpus yielded no documents ({info['description']})")
        stats = corpus_statistics(texts, tokenizer, params)
        stats.update(info)
        stats["topics"] = dict(Counter(m.get("topic") for m in metas if m.get("topic")).most_common())
        result["corpora"][which] = stats
        words[which] = word_counts(texts)
        rng = np.random.default_rng(params.seed)
        picks = sorted(rng.choice(len(texts), size=min(3, len(texts)), replace=False).tolist())
        examples[which] = [{"id": metas[i]["id"], "topic": metas[i].get("topic"), "text": texts[i][:600]} for i in picks]
    result["vocabulary_overlap"] = vocabulary_overlap(words["domain"], words["general"])
    result["top_domain_terms"] = distinctive_terms(words["domain"], words["general"])
    result["examples"] = examples
    result["seconds"] = time.perf_counter() - started
    atomic_write_json(out, result)
    return result


def narrative(result: dict, params: ExperimentParams) -> str:
    """The notebook's closing bullet points, computed from the statistics (Markdown)."""
    d, g = result["corpora"]["domain"], result["corpora"]["general"]
    seq = params.preprocess.seq_len
    fert = d["fertility_tokens_per_word"] / g["fertility_tokens_per_word"]
    lines = [
        f"- The explored domain sample has **{d['tokens']:,} tokens** in {d['documents']:,} documents "
        f"(general: {g['tokens']:,} in {g['documents']:,}); that is ≈ {d['tokens'] // seq:,} packed sequences "
        f"of {seq} tokens.",
        f"- The training budget of {params.train.token_budget:,} tokens is "
        f"{params.train.token_budget / max(1, d['tokens']):.2f} passes over that sample.",
        f"- The base tokenizer needs {fert:.2f}× as many tokens per word on the domain as on the general text "
        + ("(the domain is not more expensive to represent)." if fert <= 1.05 else "(domain text is more expensive)."),
        f"- {100 * result['vocabulary_overlap']['domain_tokens_covered_by_general_vocab']:.1f}% of domain word "
        "occurrences use words that also occur in the general corpus.",
        f"- Duplicates: exact {100 * d['exact_duplicate_rate']:.2f}% / near {100 * d['near_duplicate_rate']:.2f}% "
        f"(domain), {100 * g['exact_duplicate_rate']:.2f}% / {100 * g['near_duplicate_rate']:.2f}% (general); "
        "notebook 02 removes them before training.",
    ]
    return "\n".join(lines)


def overlap_table(result: dict):
    import pandas as pd  # lazy: heavy; only the notebook's tables need pandas

    v = result["vocabulary_overlap"]
    rows = {"domain word types": f"{v['domain_word_types']:,}", "general word types": f"{v['general_word_types']:,}",
            "shared word types": f"{v['shared_word_types']:,}", "Jaccard overlap of word types": f"{v['jaccard']:.3f}",
            "domain word occurrences covered by general vocabulary": f"{100 * v['domain_tokens_covered_by_general_vocab']:.1f}%"}
    return pd.Series(rows, name="value").to_frame()


def summary_table(result: dict):
    """The side-by-side table the notebook and the index page show."""
    import pandas as pd  # lazy: heavy; only the notebook's tables need pandas

    rows = {}
    for which, s in result["corpora"].items():
        rows[which] = {
            "documents": s["documents"], "tokens": s["tokens"], "words": s["words"],
            "tokens / document (median)": s["tokens_per_document"]["median"],
            "tokens / document (p95)": s["tokens_per_document"]["p95"],
            "fertility (tokens / word)": round(s["fertility_tokens_per_word"], 3),
            "bytes / token": round(s["bytes_per_token"], 2),
            "exact duplicates (%)": round(100 * s["exact_duplicate_rate"], 2),
            "near duplicates (%)": round(100 * s["near_duplicate_rate"], 2),
            "unreadable records": s["unreadable"]["total"],
        }
    def fmt(v):  # formatted before the frame is built, so integer counts never turn into floats
        return f"{v:,}" if isinstance(v, int) else f"{v:,.2f}"

    return pd.DataFrame({which: {k: fmt(v) for k, v in row.items()} for which, row in rows.items()})


# ------------------------------------------------------------------------------------------ figures
def fig_lengths(result: dict):
    """Document length distributions (base-model tokens), domain vs general."""
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    fig, ax = plt.subplots()
    all_lengths = [l for s in result["corpora"].values() for l in s["token_lengths"]]
    bins = np.linspace(0, max(all_lengths) + 1, 40)
    for which, s in result["corpora"].items():
        lengths = np.asarray(s["token_lengths"])
        ax.hist(lengths, bins=bins, alpha=0.55, color=PALETTE[which],
                weights=np.full(len(lengths), 100 / max(1, len(lengths))),
                label=f"{which} (median {np.median(lengths):.0f})")
    ax.legend()
    label(ax, "Document length", "tokens per document (base tokenizer)", "share of documents (%)")
    return fig


def fig_quality(result: dict):
    """Quality signals per document, domain vs general, as box plots."""
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    shown = [("mean_word_length", "mean word length (characters)"), ("alpha_word_ratio", "alphabetic words (fraction)"),
             ("digit_char_ratio", "digit characters (fraction)"), ("non_ascii_char_ratio", "non-ASCII characters (fraction)")]
    fig, axes = plt.subplots(1, len(shown), figsize=(12, 3.6))
    for ax, (key, unit) in zip(axes, shown):
        data = [result["corpora"][w]["quality_per_document"][key] for w in ("domain", "general")]
        box = ax.boxplot(data, tick_labels=["domain", "general"], patch_artist=True, showfliers=False)
        for patch, which in zip(box["boxes"], ("domain", "general")):
            patch.set_facecolor(PALETTE[which])
            patch.set_alpha(0.5)
        label(ax, key.replace("_", " "), "corpus", unit)
    fig.suptitle("Quality signals per document")
    fig.tight_layout()
    return fig


def fig_top_terms(result: dict, top: int = 20):
    """The words that most distinguish the domain corpus from the general one."""
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    rows = result["top_domain_terms"][:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(rows) + 1.2))
    ax.barh([r["term"] for r in rows], [r["z"] for r in rows], color=PALETTE["domain"])
    label(ax, "Top domain terms", "log-odds z-score (domain vs general, informative prior)", "term")
    return fig


def fig_topics(result: dict):
    """Documents per source topic in each corpus (the domain/general split is a parameter)."""
    import matplotlib.pyplot as plt  # lazy: heavy; only the notebook's figures need it

    fig, ax = plt.subplots()
    names, counts, colors = [], [], []
    for which, s in result["corpora"].items():
        for topic, n in s.get("topics", {}).items():
            names.append(f"{topic} ({which[0].upper()})")
            counts.append(n)
            colors.append(PALETTE[which])
    if not names:
        ax.text(0.5, 0.5, "the corpora carry no topic labels", ha="center", transform=ax.transAxes)
    ax.barh(names[::-1], counts[::-1], color=colors[::-1])
    label(ax, "Documents per topic (D = domain, G = general)", "documents (explored sample)", "topic")
    return fig
