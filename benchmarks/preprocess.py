"""Preprocessing throughput and memory: cpt's streaming pipeline vs the Hugging Face `run_clm.py` recipe.

Both read the same JSONL file with the same tokenizer (the packaged SmolLM2-135M) and produce packed
sequences of the same length. The reference is what `run_clm.py --train_file` does: `load_dataset("json")`,
`Dataset.map(tokenize, batched=True)`, then `Dataset.map(group_texts, batched=True)` (which concatenates
across documents, no document boundaries). Each variant runs in its own process and reports its own peak
RSS, at 1× and 10× the quickstart domain corpus. The 10× corpus is the corpus plus 9 perturbed copies:
in copy k about one word in ten is replaced by another word of the same document (seeded by k), so the
copies read like prose, pass the quality filters and stay far below the near-duplicate threshold
(estimated Jaccard ≈ 0.4 vs 0.8), and the full pipeline keeps all of them. Rows: "same work" turns our
filters and dedup off so both sides do exactly tokenize + pack; "full" is `prepare_data` as the
quickstart runs it (normalise, 9 quality filters, exact + MinHash LSH dedup, split, tokenize, pack).
Tokens exclude our document separators, so both sides count the same text.

    .venv/bin/python benchmarks/preprocess.py [--scales 1 10] [--seq-len 256]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARD_TOKENS = 1_000_000
sys.path.insert(0, str(ROOT))


def perturb(text: str, copy: int) -> str:
    """Copy ``copy`` of a document: ~10% of its words swapped for other words of the same document."""
    import random

    rng = random.Random(copy * 1_000_003 + len(text))
    words = text.split(" ")
    for i in range(len(words)):
        if rng.random() < 0.1:
            words[i] = words[rng.randrange(len(words))]
    return " ".join(words)


def make_corpus(path: Path, scale: int) -> int:
    from cpt_utils.corpora import open_corpus
    from cpt_utils.config import load_params

    params = load_params(ROOT / "params" / "quickstart.yaml")
    docs = [d.text for d in open_corpus(params.data.domain) if d.text.strip()]
    with open(path, "w", encoding="utf-8") as fh:
        for k in range(scale):
            for i, text in enumerate(docs):
                fh.write(json.dumps({"id": f"{k}-{i}", "text": text if k == 0 else perturb(text, k)}) + "\n")
    return len(docs) * scale


def run_ours(corpus: Path, out: Path, seq_len: int, full: bool) -> dict:
    from cpt_utils.config import validate_params
    from cpt_utils.preprocess import prepare_data

    if full:
        import datasketch  # noqa: F401  (imports, like the reference's `datasets`, stay outside the timing)

    quality = {} if full else {k: None for k in ("min_words", "max_words", "min_mean_word_length", "max_mean_word_length",
                                                 "max_symbol_ratio", "min_alpha_word_ratio", "max_duplicate_line_fraction",
                                                 "max_top_ngram_fraction", "max_boilerplate_line_fraction")}
    params = validate_params({
        "model": {"source": "packaged"},
        "data": {"domain": {"kind": "files", "paths": [str(corpus)]}, "general": {"topics": ["Arts"], "max_docs": 20}},
        "preprocess": {"seq_len": seq_len, "val_max_docs": 20, "val_fraction": 0.4, "quality": quality,
                       "normalize": full, "dedup": {"exact": full, "near": full},
                       # the writer buffers one shard (≈ 4 bytes/token, bounded); small shards keep that
                       # bounded buffer from blurring the 1× vs 10× memory comparison
                       "shard_tokens": SHARD_TOKENS},
    })
    from cpt_utils.corpus_processing import load_tokenizer_once

    load_tokenizer_once(params.model)  # loaded before the clock starts, as the reference's tokenizer is
    start, cpu = time.perf_counter(), time.process_time()
    manifest = prepare_data(params, out, progress=False, force=True)
    seconds = time.perf_counter() - start
    # domain tokens without our separators (the 20 general documents are not counted)
    domain_docs = manifest["splits"]["train"]["documents"] + manifest["splits"]["val_domain"]["documents"]
    tokens = manifest["corpora"]["domain"]["tokens_tokenized"] - domain_docs
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "tokens": tokens,
            "sequences": manifest["splits"]["train"]["num_sequences"], "documents": domain_docs}


def run_reference(corpus: Path, out: Path, seq_len: int) -> dict:
    from datasets import load_dataset

    from cpt_utils.modeling import load_tokenizer
    from cpt_utils.config import load_params

    tokenizer = load_tokenizer(load_params(ROOT / "params" / "quickstart.yaml").model)
    start, cpu = time.perf_counter(), time.process_time()
    raw = load_dataset("json", data_files={"train": str(corpus)}, cache_dir=str(out / "hf"))["train"]

    def tokenize_function(examples):
        return tokenizer(examples["text"])

    tokenized = raw.map(tokenize_function, batched=True, remove_columns=raw.column_names)

    def group_texts(examples):
        concatenated = {k: sum(examples[k], []) for k in examples}
        total = (len(concatenated["input_ids"]) // seq_len) * seq_len
        result = {k: [t[i:i + seq_len] for i in range(0, total, seq_len)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    grouped = tokenized.map(group_texts, batched=True)
    seconds = time.perf_counter() - start
    tokens = sum(len(x) for x in tokenized["input_ids"])
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "tokens": tokens, "sequences": len(grouped)}


def worker(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.worker == "reference":
        result = run_reference(Path(args.corpus), out, args.seq_len)
    else:
        result = run_ours(Path(args.corpus), out, args.seq_len, full=args.worker == "ours-full")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def measure(kind: str, corpus: Path, seq_len: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--corpus", str(corpus), "--out", tmp,
                               "--seq-len", str(seq_len)], capture_output=True, text=True, env=env)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(line[7:])
        result["tokens_per_s"] = result["tokens"] / result["seconds"]
        result["tokens_per_cpu_s"] = result["tokens"] / result["cpu_seconds"]
        return result


def best_of(kind: str, corpus: Path, seq_len: int, repeats: int) -> dict:
    """The fastest of ``repeats`` runs (on a shared machine the slow ones measure the neighbours), with the
    largest peak RSS seen (memory does not improve by luck)."""
    runs = [measure(kind, corpus, seq_len) for _ in range(repeats)]
    best = max(runs, key=lambda r: r["tokens_per_s"])
    return {**best, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="runs per row; the fastest is reported")
    parser.add_argument("--worker", choices=["ours", "ours-full", "reference"])
    parser.add_argument("--corpus")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from cpt_utils.paths import configure_environment

    configure_environment(offline=True)
    print(f"{'corpus':>8} {'pipeline':>22} {'documents':>9} {'tokens':>11} {'s':>6} {'tok/s':>9} "
          f"{'tok/CPU-s':>9} {'cpu/wall':>8} {'peak RSS MB':>11}")
    names = {"reference": "run_clm (map+group)", "ours": "cpt (same work)", "ours-full": "cpt (full pipeline)"}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            corpus = Path(tmp) / f"corpus-{scale}x.jsonl"
            docs = make_corpus(corpus, scale)
            rows = {kind: best_of(kind, corpus, args.seq_len, args.repeats) for kind in names}
            for kind, r in rows.items():
                print(f"{scale:>7}x {names[kind]:>22} {r.get('documents', docs):>9,} {r['tokens']:>11,} "
                      f"{r['seconds']:>6.1f} {r['tokens_per_s']:>9,.0f} {r['tokens_per_cpu_s']:>9,.0f} "
                      f"{r['cpu_seconds'] / r['seconds']:>8.2f} {r['peak_rss_mb']:>11,.0f}")
            ref = rows["reference"]
            for kind in ("ours", "ours-full"):
                r = rows[kind]
                print(f"{scale:>7}x ratio {names[kind]} / run_clm: tokens/s {r['tokens_per_s'] / ref['tokens_per_s']:.2f}×, "
                      f"tokens/CPU-s {r['tokens_per_cpu_s'] / ref['tokens_per_cpu_s']:.2f}×, "
                      f"peak RSS {r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}×")

if __name__ == "__main__":
    main()
