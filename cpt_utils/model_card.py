"""The model card of an export (``README.md``), written from the run's own files and nothing else.

Why: the evidence of a run lives in its HTML reports; a shared model needs it beside the weights, in
Hugging Face's card format (YAML front matter with ``model-index``, then Markdown). Every number is read
from the run directory — ``checkpoints/*/checkpoint.json``, ``params.yaml``, ``metrics.jsonl``,
``data/manifest.json``, ``evals/*.json`` (current ones only, ``results.stale_reason``; the control's
under ``control/``) — and the paired comparisons are the headline's (``headline.comparisons``), so the card and
the reports cannot disagree. What the run did not record is said to be missing, never guessed.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import yaml

from .assets import ASSETS
from .assets import PACKAGED_MODELS
from .atomic import atomic_write
from .config import ModelParams
from .corpora import corpus_provenance as kind_provenance
from .headline import comparisons as headline_comparisons, compact_rows, forest_rows, measures as headline_measures, paragraph
from .modeling import model_id
from .packing import replay_split_name
from .paths import reports_root
from .readings import cannot_test_words
from .repo_state import git_state
from .results import control_dir, load_evals

#: The forest plot's file beside the card
FOREST_FILE = "forest.svg"
#: Where a packaged base model came from on the hub (the GGUF's general.organization / name).
PACKAGED_BASE_MODELS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


# --------------------------------------------------------------------------------------- reading
def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _read_params(run_dir: Path) -> dict:
    """The run's resolved ``params.yaml`` as plain data (a schema change elsewhere must not break a card)."""
    path = run_dir / "params.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _metrics(run_dir: Path, step: int) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return [r for r in rows if r.get("kind") == "train" and r["step"] <= step]


def _commit(run_dir: Path) -> dict:
    """The commit that made the run: as ``cpt run`` recorded it in ``reports/<run>/index.json``, else
    the working tree's HEAD now (and the card says which)."""
    for index in (run_dir / "index.json", reports_root() / run_dir.name / "index.json"):
        prov = (_read_json(index) or {}).get("provenance") or {}
        if prov.get("git", {}).get("commit"):
            return {**prov["git"], "source": f"recorded by `cpt run` ({index.name} of the run's report, {prov.get('time', '')})",
                    "hardware": prov.get("hardware")}
    return {**git_state(), "source": "not recorded in the run: the repository's HEAD at export time", "hardware": None}


def _control(run_dir: Path, tokens: int) -> tuple[str, dict] | None:
    """A same-budget control run's current evaluation at the exported checkpoint's token count, and the
    control's folder relative to the run (``results.control_dir``), if the run has one."""
    folder = control_dir(run_dir)
    for ev in load_evals(folder).values():
        if ev["tokens"] == tokens and ev["checkpoint"] != "base":
            return folder.relative_to(run_dir).as_posix(), ev
    return None


# --------------------------------------------------------------------------------------- the facts
def base_model(model: dict) -> str:
    """The base model's hub id where there is one, else its identity as the run recorded it."""
    source, name = model.get("source", "packaged"), model.get("name", "")
    if source == "packaged" and name in PACKAGED_BASE_MODELS:
        return PACKAGED_BASE_MODELS[name]
    if source == "hub":
        return name
    return model_id(ModelParams(**model)) if model else "unknown (no params.yaml in the run)"


def base_license(model: dict) -> str:
    """The base model's licence as a Hugging Face id (packaged assets record theirs), else ``other``."""
    if model.get("source") == "packaged" and model.get("name") in PACKAGED_MODELS:
        return ASSETS[PACKAGED_MODELS[model["name"]]].license.split()[0].lower()
    return "other"


def corpus_provenance(source: dict) -> dict:
    """Where a corpus came from and under which licence: its kind says (``cpt_utils.corpora``)."""
    return kind_provenance(source)


def recipe(run_dir: Path, checkpoint: dict, params: dict) -> dict:
    """Tokens, schedule, LR, precision, hardware and time: checkpoint.json, params.yaml, metrics.jsonl."""
    train, pre = params.get("train", {}), params.get("preprocess", {})
    seg = checkpoint.get("segment") or {}
    rows = _metrics(run_dir, checkpoint.get("step", 0))
    seq_len = pre.get("seq_len")
    per_process = (train.get("micro_batch_size") or 0) * (seq_len or 0) * (train.get("grad_accum_steps") or 1)
    out = {
        "tokens": checkpoint["tokens"], "steps": checkpoint.get("step"), "tokens_per_step": checkpoint.get("tokens_per_step"),
        "processes": checkpoint["tokens_per_step"] // per_process if per_process and checkpoint.get("tokens_per_step") else None,
        "n_params": checkpoint.get("n_params"), "seq_len": seq_len, "micro_batch_size": train.get("micro_batch_size"),
        "grad_accum_steps": train.get("grad_accum_steps"), "token_budget": train.get("token_budget"),
        "schedule": seg.get("kind", train.get("schedule")), "peak_lr": seg.get("peak", train.get("lr")),
        "warmup_steps": seg.get("warmup"), "min_lr_ratio": seg.get("min_ratio", train.get("min_lr_ratio")),
        "decay_fraction": seg.get("decay_fraction", train.get("decay_fraction")),
        "weight_decay": train.get("weight_decay"), "betas": [train.get("beta1"), train.get("beta2")],
        "grad_clip": train.get("grad_clip"), "precision": train.get("precision"),
        "replay_fraction": train.get("replay_fraction"), "l2_init_weight": train.get("l2_init_weight"),
        "per_document_attention": train.get("per_document_attention"), "seed": params.get("seed"),
        "logged_steps": len(rows),
    }
    if rows:
        out.update({
            "final_train_loss": rows[-1]["loss"], "step_time_s": sum(r["time_s"] for r in rows),
            "median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows),
            "peak_mem_mb": max(r.get("mem_mb") or 0 for r in rows),
            "median_mfu": statistics.median(r["mfu"] for r in rows) if all(r.get("mfu") is not None for r in rows) else None,
        })
    stamp = _read_json(run_dir / "notebooks" / "03_training.run.json")
    out["notebook_training_s"] = stamp.get("seconds") if stamp else None
    return out


def trained_splits(params: dict, manifest: dict) -> dict[str, float]:
    """The prepared splits the run trained on, each with its share of every batch: the run's train
    split (``train``, or ``control`` for a control run) and each replay source's split (``replay`` for
    general text, ``replay_<register>`` for a register in ``train.replay_mixture``), as the run's
    resolved parameters say and the manifest holds."""
    train = params.get("train") or {}
    replay = float(train.get("replay_fraction") or 0)
    mixture = {k: float(v) for k, v in (train.get("replay_mixture") or {"general": 1.0}).items() if float(v) > 0}
    total = sum(mixture.values()) or 1.0
    shares = {train.get("train_split") or "train": 1 - replay}
    for source, weight in mixture.items():
        if replay > 0:
            shares[replay_split_name(source)] = replay * weight / total
    known = manifest.get("splits")
    return {split: share for split, share in shares.items() if share > 0 and (known is None or split in known)}


def _corpus_splits(corpus: str, params: dict) -> list[str]:
    """The training splits a corpus of the manifest feeds: domain → train; general → replay; a register
    → replay_<name>; and the control split for the control run's corpus."""
    own = {"domain": ["train"], "general": [replay_split_name("general")]}.get(corpus, [replay_split_name(corpus)])
    control = (params.get("control") or {}).get("corpus")
    return own + (["control"] if control == corpus else [])


def _role(corpus: str, shares: dict[str, float], register: bool) -> str:
    """What the run did with a corpus, from the shares of the splits it trained on."""
    held = "held-out (forgetting)" if register else "held-out"
    if shares.get("control"):
        return f"control: trained on ({shares['control']:.0%} of each batch); {held}"
    if shares.get("train"):
        return "domain: trained on"
    replayed = sum(v for k, v in shares.items() if k.startswith("replay"))
    if replayed:
        return f"{'register' if register else 'general'}: replayed at {replayed:.0%} of each batch; {held}"
    return f"{held} only" if register else "general: not trained on; held-out"


def data_rows(run_dir: Path, params: dict) -> list[dict]:
    """One row per corpus of the manifest: its role (from ``trained_splits``: a replayed register is
    trained on), description, provenance, licence and split sizes."""
    manifest = _read_json(run_dir / "data" / "manifest.json") or {}
    splits = manifest.get("splits", {})
    trained = trained_splits(params, manifest)
    corpora = [(which, c, False) for which, c in manifest.get("corpora", {}).items()]
    corpora += [(name, r, True) for name, r in manifest.get("registers", {}).items()]
    rows = []
    for name, c, register in corpora:
        shares = {s: trained[s] for s in _corpus_splits(name, params) if s in trained}
        tokens = [splits.get(s, {}).get("num_tokens") for s in shares]
        rows.append({"corpus": f"register {name}" if register else name, "role": _role(name, shares, register),
                     "description": c.get("description", ""), **corpus_provenance(c.get("source", {})),
                     "documents_read": c.get("documents_read"),
                     "train_tokens": sum(t for t in tokens if t) if any(tokens) else None,
                     "heldout_documents": splits.get(f"val_{name}", {}).get("documents"),
                     "trained_on": bool(shares), "trained_splits": sorted(shares)})
    return rows


def comparisons(run_dir: Path, checkpoint: dict, params: dict) -> dict:
    """Base vs the exported checkpoint (and vs the control) per task, task group and held-out split."""
    evals = load_evals(run_dir)
    base, ev = evals.get("base"), evals.get(checkpoint["name"])
    if base is None or ev is None:
        missing = [n for n, e in (("base", base), (checkpoint["name"], ev)) if e is None]
        return {"available": False, "missing": missing}
    groups = (params.get("eval") or {}).get("task_groups") or {}
    control = _control(run_dir, checkpoint["tokens"])
    found = headline_comparisons(base, ev, groups, control[1] if control else None)
    # continued − control of each measure (the card shows its change ± SE and raw p)
    vs_control = {(r["kind"], r["subject"]): {"delta": r["continued − control"], "se": r["continued − control SE"],
                                              "p": r["continued − control p"], "testable": r["testable"], "n": r["n"]}
                  for r in found["control"]}
    return {"available": True, "base": base, "eval": ev, "rows": found["rows"],
            "measures": headline_measures(base, ev, groups, control[1] if control else None),
            "groups": found["groups"], "task_groups": groups,
            "control_name": control[0] if control else None, "vs_control": vs_control}


def collect(run_dir: Path, checkpoint: dict, export: dict) -> dict:
    """Everything the card says, as data (what the tests check the rendered card against)."""
    run_dir = Path(run_dir)
    params = _read_params(run_dir)
    return {"run": run_dir.name, "run_dir": str(run_dir), "checkpoint": checkpoint, "export": export,
            "params": params, "description": params.get("description") or "",
            "base_model": base_model(params.get("model") or {}), "license": base_license(params.get("model") or {}),
            "recipe": recipe(run_dir, checkpoint, params), "data": data_rows(run_dir, params),
            "results": comparisons(run_dir, checkpoint, params), "commit": _commit(run_dir)}


# ------------------------------------------------------------------------------------- rendering
def _p(p: float) -> str:
    return "n/a" if p is None or not math.isfinite(p) else f"{p:.2g}"


def _p_cells(r: dict) -> list[str]:
    """Raw and family-adjusted p of a comparison, or the reason it was not tested (twice)."""
    if not r.get("testable", True):
        words = cannot_test_words(r.get("n") or 0)
        return [words, words]
    return [_p(r["p"]), _p(r.get("p_adj"))]


def _num(x, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x)


def digits_for(kind: str) -> int:
    """Accuracy to 3 decimals, losses and bits per byte to 4 (as the reports' headline table)."""
    return 3 if kind == "accuracy" else 4


def change(r: dict, digits: int) -> str:
    return f"{r['delta']:+.{digits}f} ± {r['se']:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def front_matter(facts: dict) -> dict:
    """Hugging Face card metadata: base model, training data, licence, tags and ``model-index``."""
    res = facts["results"]
    fmt = facts["export"]["format"]
    datasets = list(dict.fromkeys(d["dataset"] for d in facts["data"] if d["trained_on"]))
    meta = {"base_model": facts["base_model"], "base_model_relation": "finetune", "datasets": datasets,
            "license": facts["license"], "pipeline_tag": "text-generation",
            "library_name": "transformers" if fmt == "hf" else "gguf",
            "tags": ["cpt", "continued-pretraining", "llama"] + (["gguf"] if fmt == "gguf" else [])}
    if not res["available"]:
        return meta
    results = []
    for r in res["rows"]:
        if r["kind"] == "accuracy":
            t = res["eval"]["tasks"][r["subject"]]
            results.append({"task": {"type": "multiple-choice", "name": "Multiple choice"},
                            "dataset": {"name": r["subject"], "type": (t.get("meta") or {}).get("benchmark", r["subject"])},
                            "metrics": [{"type": t["metric"], "value": float(r["other"]), "name": f"{t['metric']} (n={r['n']})",
                                         "verified": False}]})
        elif r["kind"] == "held-out loss":
            p = res["eval"]["perplexity"][r["subject"]]
            metrics = [{"type": "loss", "value": float(p["loss"]), "name": "loss (nats/token)", "verified": False}]
            if "bits_per_byte" in p:
                metrics.append({"type": "bits_per_byte", "value": float(p["bits_per_byte"]), "name": "bits per byte",
                                "verified": False})
            results.append({"task": {"type": "text-generation", "name": "Held-out language modelling"},
                            "dataset": {"name": r["subject"], "type": "held-out text"}, "metrics": metrics})
    meta["model-index"] = [{"name": f"{facts['run']}-{facts['checkpoint']['name']}", "results": results}]
    return meta


def _summary(facts: dict) -> str:
    rec, res = facts["recipe"], facts["results"]
    domain = next((d["description"] for d in facts["data"] if d["corpus"] == "domain"), "the run's domain corpus")
    text = (f"`{facts['base_model']}` continued-pre-trained on {domain} for {rec['tokens']:,} tokens "
            f"(checkpoint `{facts['checkpoint']['name']}` of run `{facts['run']}`), exported by `cpt export` as "
            f"{facts['export']['format']} {facts['export']['dtype']}.")
    if facts["description"]:
        text += f" Run description: {facts['description'].strip()}"
    if res["available"]:
        dom = next((r for r in res["rows"] if r["measure"] == "val_domain loss"), None)
        if dom:
            text += (f"\n\nHeld-out domain loss {dom['base']:.4f} → {dom['other']:.4f} nats/token "
                     f"({change(dom, 4)}, p = {_p_cells(dom)[0]}).")
    return text


def _usage(facts: dict) -> str:
    files = facts["export"]["files"]
    if facts["export"]["format"] == "gguf":
        return ("```bash\nllama-cli -m " + files[0] + " -p \"Photosynthesis is\"\n```\n\n"
                "or in Python (transformers dequantises it):\n\n```python\nfrom transformers import AutoModelForCausalLM, "
                f"AutoTokenizer\nmodel = AutoModelForCausalLM.from_pretrained(\".\", gguf_file=\"{files[0]}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\".\", gguf_file=\"{files[0]}\")\n```")
    return ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "model = AutoModelForCausalLM.from_pretrained(\"path/to/this/folder\")\n"
            "tokenizer = AutoTokenizer.from_pretrained(\"path/to/this/folder\")\n```")


def _headline_md(facts: dict) -> str:
    """The reports' headline (``headline.measures``, one builder): the forest plot, the sentences built from
    the numbers and the compact table."""
    found = facts["results"]["measures"]
    rows = compact_rows(found)
    parts = (["![What continued pre-training changed: each measure's change with its 95% interval, against the base"
              + (" and the control" if facts["results"]["control_name"] else "") + f"]({FOREST_FILE})"]
             if forest_rows(found) else [])
    parts += ["- " + s for s in paragraph(found)]
    if rows:
        parts.append(_table(list(rows[0]), [[str(v) for v in r.values()] for r in rows]))
    return "\n\n".join(parts)


def _recipe_md(facts: dict) -> str:
    r = facts["recipe"]
    hw = facts["commit"].get("hardware")
    hardware = (f"{hw.get('cpu')}, {hw.get('cores')} cores, {hw.get('memory_gib')} GiB; GPU: {hw.get('gpu')}"
                if hw else "not recorded in the run (it was not trained by `cpt run`)")
    rows = [
        ["tokens seen", _num(r["tokens"]) + (f" of a {r['token_budget']:,}-token budget" if r.get("token_budget") else "")],
        ["optimizer steps", f"{_num(r['steps'])} × {_num(r['tokens_per_step'])} tokens "
                            f"(micro-batch {r['micro_batch_size']} × {r['seq_len']} tokens × {r['grad_accum_steps']} "
                            f"accumulation × {r['processes']} process(es))"],
        ["schedule", f"{r['schedule']}, {r['warmup_steps']} warm-up steps, minimum {r['min_lr_ratio']} × peak, "
                     f"decay fraction {r['decay_fraction']}"],
        ["peak learning rate", _num(r["peak_lr"]) if not isinstance(r["peak_lr"], float) else f"{r['peak_lr']:g}"],
        ["optimizer", f"AdamW, betas {r['betas']}, weight decay {r['weight_decay']}, gradient clip {r['grad_clip']}"],
        ["replay / L2 pull", f"{r['replay_fraction']} / {r['l2_init_weight']}"],
        ["precision (train.precision)", str(r["precision"])],
        ["per-document attention", str(r["per_document_attention"])],
        ["parameters", _num(r["n_params"])],
        ["seed", str(r["seed"])],
        ["hardware", hardware],
    ]
    if r.get("logged_steps"):
        rows += [
            ["training step time", f"{r['step_time_s']:.1f} s summed over {r['logged_steps']} logged of {r['steps']} steps "
                                   "(in-loop evaluation and checkpoints excluded)"],
            ["throughput", f"median {r['median_tokens_per_s']:,.0f} tokens/s"
                           + (f", median MFU {r['median_mfu']:.2%}" if r.get("median_mfu") is not None else "")],
            ["peak memory", f"{r['peak_mem_mb']:,.0f} MiB"],
            ["final training loss", f"{r['final_train_loss']:.4f}"],
        ]
    if r.get("notebook_training_s") is not None:
        rows.append(["wall time of the training notebook", f"{r['notebook_training_s']:.0f} s (training, in-loop evaluations, checkpoints)"])
    return _table(["", "value"], rows)


def _data_md(facts: dict) -> str:
    if not facts["data"]:
        return "The run has no `data/manifest.json`: the data cannot be described from the run."
    rows = [[d["corpus"], d["role"], d["description"], d["dataset"], d["licence"], _num(d["documents_read"]),
             _num(d["train_tokens"]), _num(d["heldout_documents"])] for d in facts["data"]]
    return _table(["corpus", "role", "what", "source", "licence", "documents read", "training tokens",
                   "held-out documents"], rows)


def _benchmark_md(facts: dict) -> str:
    res = facts["results"]
    ctl = res["control_name"]
    header = ["measure", "n", "base", "continued", "change ± SE", "p", "p (adjusted)", "MDE (80% power)"]
    if ctl:
        header += [f"continued − {ctl} ± SE", "p (vs control)"]
    rows = []
    for r in res["rows"]:
        if r["kind"] not in ("accuracy", "gold bits/byte"):
            continue
        d = digits_for(r["kind"])
        row = [r["measure"], _num(r["n"]), f"{r['base']:.{d}f}", f"{r['other']:.{d}f}", change(r, d), *_p_cells(r),
               f"{r['mde_80']:.{d}f}"]
        if ctl:
            c = res["vs_control"].get((r["kind"], r["subject"]))
            row += [change(c, d), _p_cells(c)[0]] if c else ["—", "—"]
        rows.append(row)
    for g in res["groups"]:
        d = digits_for(g["kind"])
        row = [f"**{g['group']} group**: mean {g['kind']} over {g['tasks']} tasks", _num(g["n"]), f"{g['base']:.{d}f}",
               f"{g['other']:.{d}f}", change(g, d), *_p_cells(g), f"{g['mde_80']:.{d}f}"]
        rows.append(row + (["—", "—"] if ctl else []))
    if not rows:
        return "No benchmark tasks were evaluated."
    return _table(header, rows)


def _heldout_md(facts: dict) -> str:
    res = facts["results"]
    by = {(r["kind"], r["subject"]): r for r in res["rows"]}
    rows = []
    for split in res["eval"]["perplexity"]:
        loss, bpb = by.get(("held-out loss", split)), by.get(("held-out bits/byte", split))
        if loss is None:
            continue
        row = [split, _num(loss["n"]), f"{loss['base']:.4f} → {loss['other']:.4f}", change(loss, 4), *_p_cells(loss)]
        row += ([f"{bpb['base']:.4f} → {bpb['other']:.4f}", change(bpb, 4), *_p_cells(bpb)] if bpb else ["—"] * 4)
        if res["control_name"]:
            c = res["vs_control"].get(("held-out loss", split))
            row += [change(c, 4) if c else "—"]
        rows.append(row)
    header = ["held-out text", "documents", "loss (nats/token)", "change ± SE", "p", "p (adjusted)", "bits/byte",
              "change ± SE", "p", "p (adjusted)"]
    if res["control_name"]:
        header.append(f"loss: continued − {res['control_name']}")
    return _table(header, rows)


def not_shown(facts: dict) -> list[dict]:
    """Rows whose change is not significant at its family-adjusted p (a zero change with a zero SE — no
    item flipped — included), and rows that could not be tested (too few documents)."""
    res = facts["results"]
    rows = [r for r in res["rows"] if not r["significant"]]
    return rows + [g | {"measure": f"{g['group']} group: mean {g['kind']}"} for g in res["groups"] if not g["significant"]]


def _not_shown_md(facts: dict) -> str:
    rows = not_shown(facts)
    if not rows:
        return "Every measured change is significant (p < 0.05 after adjustment within its family)."
    items = [f"- {r['measure']}: {change(r, digits_for(r['kind']))}, "
             + (cannot_test_words(r.get("n") or 0) if not r.get("testable", True) else
                f"MDE at 80% power {r['mde_80']:.{digits_for(r['kind'])}f}") for r in rows]
    return ("These changes are not significant (p ≥ 0.05 after adjustment within their family: Benjamini–Hochberg, "
            "Holm below 5 tests) or could not be tested: they are not evidence of no effect. The minimum detectable "
            "effect is the change these items and documents would find 80% of the time.\n\n" + "\n".join(items))


def render(facts: dict) -> str:
    """The card: YAML front matter, then the Markdown sections."""
    res, c = facts["results"], facts["commit"]
    parts = ["---\n" + yaml.safe_dump(front_matter(facts), sort_keys=False, allow_unicode=True) + "---",
             f"# {facts['run']} · {facts['checkpoint']['name']}", _summary(facts),
             "## How to use", _usage(facts),
             "## Training recipe", _recipe_md(facts),
             "## Data", _data_md(facts)]
    if res["available"]:
        ev = res["eval"]
        parts += ["## Headline", _headline_md(facts),
                  "## Benchmarks: base vs continued",
                  f"Paired over the same items (accuracy: McNemar's exact test; gold-answer bits per byte: paired t); "
                  f"evaluated in {ev.get('precision', '?')} (`evals/base.json`, `evals/{facts['checkpoint']['name']}.json`)."
                  + (f" The control column compares against the same-budget control run `{facts['run']}/{res['control_name']}`."
                     if res["control_name"] else " The run has no control run, so no control column."),
                  _benchmark_md(facts),
                  "## Forgetting by register (held-out text)",
                  "Change in loss and bits per byte on held-out documents, paired document by document "
                  "(standard errors clustered by document); lower is better.",
                  _heldout_md(facts),
                  "## What did not show", _not_shown_md(facts)]
    else:
        parts += ["## Evaluation", f"Not evaluated: the run has no evaluation of {', '.join(res['missing'])}; "
                  f"run `cpt eval PARAMS --checkpoint all` and export again."]
    parts += ["## Provenance", _table(["", ""], [
        ["git commit", f"`{c.get('commit')}`" + (" (with uncommitted changes)" if c.get("dirty") else "")],
        ["commit source", c["source"]],
        ["run", f"`{facts['run_dir']}`"], ["checkpoint", f"`{facts['checkpoint']['name']}` ({facts['checkpoint']['tokens']:,} tokens)"],
        ["export", f"{facts['export']['format']} {facts['export']['dtype']}: {', '.join(facts['export']['files'])} ({facts['export']['time']})"],
    ])]
    return "\n\n".join(parts) + "\n"


def write_card(out_dir: Path, run_dir: Path, checkpoint: dict, export: dict) -> Path:
    """Write ``README.md`` (and the forest plot it shows, ``forest.svg``) into ``out_dir`` from the run's
    files; return the card's path."""
    facts = collect(Path(run_dir), checkpoint, export)
    if facts["results"]["available"]:
        write_forest(Path(out_dir) / FOREST_FILE, forest_rows(facts["results"]["measures"]), facts["run"])
    path = Path(out_dir) / "README.md"
    atomic_write(path, render(facts))
    return path


def write_forest(path: Path, rows: list[dict], run: str) -> Path | None:
    """The headline's forest plot as an SVG file beside the card (None without rows)."""
    from .forest import forest_svg  # lazy: matplotlib only when a card with results is written

    svg = forest_svg(rows, run)
    if not svg:
        return None
    atomic_write(path, svg)
    return path


def read_front_matter(card: str) -> dict:
    """The YAML front matter of a card (what the hub reads)."""
    if not card.startswith("---\n"):
        raise ValueError("a model card starts with YAML front matter between --- lines")
    return yaml.safe_load(card.split("---\n", 2)[1])
