"""Preprocessing throughput and memory: cpt's streaming pipeline vs the Hugging Face `run_clm.py` recipe.

Both read the same JSONL file with the same tokenizer (the packaged SmolLM2-135M) and produce packed
sequences of the same length. The reference is what `run_clm.py --train_file` does: `load_dataset("json")`,
`Dataset.map(tokenize, batched=True)`, then `Dataset.map(group_texts, batched=True)` (which concatenates
across documents, no document boundaries). Each variant runs in its own process and reports its own peak
RSS, at 1× and 10× the quickstart domain corpus (the 10× corpus repeats each document with a distinct
suffix, and deduplication is off for the comparison so both sides tokenize the same text; a separate row
shows our full pipeline with cleaning and MinHash dedup on).

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
sys.path.insert(0, str(ROOT))


def make_corpus(path: Path, scale: int) -> int:
    from cpt_utils.corpora import open_corpus
    from cpt_utils.params import load_params

    params = load_params(ROOT / "params" / "quickstart.yaml")
    docs = [d.text for d in open_corpus(params.data.domain) if d.text.strip()]
    with open(path, "w", encoding="utf-8") as fh:
        for k in range(scale):
            for i, text in enumerate(docs):
                fh.write(json.dumps({"id": f"{k}-{i}", "text": text if k == 0 else f"{text} (Copy {k}.)"}) + "\n")
    return len(docs) * scale


def run_ours(corpus: Path, out: Path, seq_len: int, full: bool) -> dict:
    from cpt_utils.params import validate_params
    from cpt_utils.preprocess import prepare_data

    quality = {} if full else {k: None for k in ("min_words", "max_words", "min_mean_word_length", "max_mean_word_length",
                                                 "max_symbol_ratio", "min_alpha_word_ratio", "max_duplicate_line_fraction",
                                                 "max_top_ngram_fraction", "max_boilerplate_line_fraction")}
    params = validate_params({
        "model": {"source": "packaged"},
        "data": {"domain": {"kind": "files", "paths": [str(corpus)]}, "general": {"topics": ["Arts"], "max_docs": 20}},
        "preprocess": {"seq_len": seq_len, "val_max_docs": 20, "val_fraction": 0.4, "quality": quality,
                       "dedup": {"exact": full, "near": full}},
    })
    from cpt_utils.modeling import load_tokenizer

    load_tokenizer(params.model)  # converted model cached: not part of the timing
    start, cpu = time.perf_counter(), time.process_time()
    manifest = prepare_data(params, out, progress=False, force=True)
    seconds = time.perf_counter() - start
    tokens = manifest["corpora"]["domain"]["tokens_tokenized"]  # the 20 general documents are not counted
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "tokens": tokens,
            "sequences": manifest["splits"]["train"]["num_sequences"]}


def run_reference(corpus: Path, out: Path, seq_len: int) -> dict:
    from datasets import load_dataset

    from cpt_utils.modeling import load_tokenizer
    from cpt_utils.params import load_params

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
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--worker", choices=["ours", "ours-full", "reference"])
    parser.add_argument("--corpus")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from cpt_utils.paths import configure_environment

    configure_environment(offline=True)
    print(f"{'corpus':>8} {'pipeline':>22} {'tokens':>11} {'s':>7} {'tok/s':>9} {'cpu/wall':>8} {'peak RSS MB':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            corpus = Path(tmp) / f"corpus-{scale}x.jsonl"
            docs = make_corpus(corpus, scale)
            rows = {kind: measure(kind, corpus, args.seq_len) for kind in ("reference", "ours", "ours-full")}
            for kind, r in rows.items():
                name = {"reference": "run_clm (map+group)", "ours": "cpt (same work)", "ours-full": "cpt (+clean, dedup)"}[kind]
                print(f"{scale:>7}x {name:>22} {r['tokens']:>11,} {r['seconds']:>7.1f} {r['tokens_per_s']:>9,.0f} "
                      f"{r['cpu_seconds'] / r['seconds']:>8.2f} {r['peak_rss_mb']:>11,.0f}")
            ref, ours = rows["reference"], rows["ours"]
            print(f"{scale:>7}x ratio cpt/run_clm: tokens/s {ours['tokens_per_s'] / ref['tokens_per_s']:.2f}×, "
                  f"peak RSS {ours['peak_rss_mb'] / ref['peak_rss_mb']:.2f}× ({docs:,} documents)")


if __name__ == "__main__":
    main()
