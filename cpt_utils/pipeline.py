"""Batch execution: papermill runs the numbered notebooks with one parameter file, nbconvert renders
them to ``reports/<run>/``, and an index page records what was run, where, and how long it took.

Notebooks share nothing in memory — each reads and writes the run directory — so the pipeline is a
plain loop. A notebook whose source, parameters and package code are unchanged since its last
successful execution is not executed again (its report is kept); a failing notebook is still rendered,
so the report shows where and why, and the command exits non-zero naming it.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from .analysis import MIN_DOCUMENTS
from .atomic import atomic_write, atomic_write_json
from .config import ExperimentParams, load_params, save_resolved
from .errors import CptError
from .explore import summary_table
from . import headline
from .formatting import p_value
from .headline import headline_table
from .paths import REPO_ROOT, configure_environment, notebooks_dir, reports_root, run_dir as make_run_dir, runs_root
from .preprocess_report import held_out_rows
from .render import _overrides_text, render_html
from .repo_state import git_state

KEY_PACKAGES = ("torch", "transformers", "accelerate", "datasets", "lm-eval", "tokenizers", "datasketch",
                "papermill", "nbconvert", "numpy", "pandas", "scipy", "matplotlib", "pydantic")


@dataclass
class NotebookRecord:
    name: str
    status: str = "pending"          # ok | reused | failed | not run
    seconds: float = 0.0
    error: str = ""
    html: str = ""
    fingerprint: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- provenance
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def code_fingerprint() -> str:
    """Hash of the package's source: a code change invalidates executed notebooks."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "cpt_utils").rglob("*")):
        if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def hardware() -> dict:
    import psutil  # lazy: psutil only when the hardware is recorded

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        info["gpu"] = out.stdout.strip().replace("\n", "; ") if out.returncode == 0 and out.stdout.strip() else "none"
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = "none"
    return info


def provenance(params: ExperimentParams) -> dict:
    return {"params_file": params.source_path, "overrides": list(params.recorded.overrides),
            "run_name": params.run_name, "git": git_state(),
            "packages": package_versions(), "hardware": hardware(),
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# ---------------------------------------------------------------------------------------- execution
def discover_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order; ``only`` filters by number or name."""
    books = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if only:
        def names(book: Path) -> set[str]:
            return {book.stem, book.stem[:2], book.stem[3:], book.stem[:2].lstrip("0")}
        unknown = [item for item in only if not any(item in names(p) for p in books)]
        if unknown:  # every item must name a notebook: "--only 3 6" must not quietly run 03 alone
            raise CptError(f"--only {' '.join(unknown)}: no such notebook; available: "
                           f"{', '.join(p.stem for p in books)} (by number, e.g. --only 03, or by name)")
        books = [p for p in books if names(p) & set(only)]
    return books


def _first_error(executed: Path) -> str:
    """The failing cell's error, read back from the partly executed notebook."""
    import nbformat  # lazy: nbformat only when notebooks are run or rendered

    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:  # noqa: BLE001 - the notebook may not exist if the kernel never started
        return ""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
    return ""


def execute_notebook(source: Path, executed: Path, params_path: str, run_name: str) -> tuple[bool, str]:
    """Run one notebook with papermill; return (succeeded, error summary)."""
    import papermill as pm  # lazy: papermill only when notebooks run

    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(source), str(executed), parameters={"params_path": params_path, "run_name": run_name},
            cwd=str(source.parent), kernel_name="python3", progress_bar=sys.stderr.isatty(),
            log_output=False, request_save_on_cell_execute=True,
        )
        return True, ""
    except pm.PapermillExecutionError as err:
        return False, f"cell {err.cell_index}: {err.ename}: {err.evalue}"
    except Exception as err:  # noqa: BLE001 - kernel death, timeouts: still report, never hide
        return False, _first_error(executed) or f"{type(err).__name__}: {err}"


def freeze_params(params: ExperimentParams) -> Path:
    """Write ``runs/<run>/params.yaml`` (every value resolved, the ``--set`` overrides recorded) and return
    it: the one file every step of the run then reads, so overrides reach notebooks and subprocesses."""
    path = make_run_dir(params.run_name) / "params.yaml"
    save_resolved(params, path)
    return path


def run_pipeline(params_path: str | Path, only: list[str] | None = None, force: bool = False,
                 sets: list[str] | tuple[str, ...] = ()) -> int:
    """Execute the notebooks in order with ``params_path`` (and ``--set`` overrides) and render
    ``reports/<run>/``; 0 on success. Each notebook gets the run's resolved ``params.yaml``."""
    params = load_params(params_path, sets=sets)
    configure_environment(offline=params.offline)
    run = make_run_dir(params.run_name)
    resolved = freeze_params(params)
    report_dir = reports_root() / params.run_name
    prov = provenance(params)
    # the values decide whether a notebook is current, not how they were spelled (file or --set)
    params_hash = _sha(json.dumps(params.model_dump(mode="json", exclude={"recorded"}), sort_keys=True).encode())
    code_hash = code_fingerprint()
    records: list[NotebookRecord] = []
    failed: NotebookRecord | None = None
    books = discover_notebooks(only)
    print(f"cpt run: {len(books)} notebook(s) for run '{params.run_name}' → {report_dir}")
    for source in books:
        record = NotebookRecord(source.stem)
        records.append(record)
        if failed is not None:
            record.status = f"not run ({failed.name} failed)"
            continue
        executed = run / "notebooks" / source.name
        html_path = report_dir / f"{source.stem}.html"
        stamp = executed.with_suffix(".run.json")
        record.fingerprint = {"notebook": _sha(source.read_bytes()), "params": params_hash, "code": code_hash}
        previous = json.loads(stamp.read_text()) if stamp.is_file() else {}
        if (not force and previous.get("status") == "ok" and previous.get("fingerprint") == record.fingerprint
                and executed.is_file() and html_path.is_file()):
            record.status, record.seconds, record.html = "reused", previous.get("seconds", 0.0), html_path.name
            print(f"  {source.stem}: unchanged since its last run, reusing {html_path.name}")
            continue
        print(f"  {source.stem}: executing …", flush=True)
        started = time.perf_counter()
        ok, error = execute_notebook(source, executed, str(resolved), params.run_name)
        record.seconds = time.perf_counter() - started
        record.status = "ok" if ok else "failed"
        record.error = error
        if executed.is_file():
            render_html(executed, html_path, prov, record.seconds, record.status)
            record.html = html_path.name
        atomic_write_json(stamp, {"status": record.status, "fingerprint": record.fingerprint,
                                  "seconds": record.seconds, "error": error})
        print(f"  {source.stem}: {record.status} in {record.seconds:.0f} s" + (f" — {error}" if error else ""), flush=True)
        if not ok:
            failed = record
    index = write_index(params, report_dir, run, records, prov)
    print(f"index: {index}")
    if failed is not None:
        print(f"error: notebook {failed.name} failed ({failed.error}); see {report_dir / (failed.name + '.html')}",
              file=sys.stderr)
        return 1
    return 0


def render_run(run_name: str) -> int:
    """Re-render ``reports/<run>/`` from the executed notebooks already in ``runs/<run>/notebooks``."""
    run = runs_root() / run_name
    if not (run / "params.yaml").is_file():
        print(f"error: {run} has no params.yaml; run `cpt run PARAMS` first", file=sys.stderr)
        return 2
    params = load_params(run / "params.yaml", check=False)  # re-rendering only: the run was checked when it ran
    prov = provenance(params)
    records = []
    for executed in sorted((run / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        stamp = json.loads(executed.with_suffix(".run.json").read_text()) if executed.with_suffix(".run.json").is_file() else {}
        rec = NotebookRecord(executed.stem, status=stamp.get("status", "ok"), seconds=stamp.get("seconds", 0.0),
                             error=stamp.get("error", ""))
        rec.html = render_html(executed, reports_root() / run_name / f"{executed.stem}.html", prov, rec.seconds, rec.status).name
        records.append(rec)
    print(write_index(params, reports_root() / run_name, run, records, prov))
    return 0


# --------------------------------------------------------------------------------------------- index
def html_table(rows: list[dict], numeric_from: int = 1, cls: str = "table") -> str:
    """Rows of already formatted cells as an HTML table: no index column, text left, numbers right."""
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i >= numeric_from else ''}>{html.escape(str(v))}</td>"
                                    for i, v in enumerate(r.values())) + "</tr>" for r in rows)
    return f"<div class='scroll'><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _forest_svg(rows: list[dict], run_name: str) -> str:
    """The forest plot as inline SVG (crisp at any zoom; nothing to fetch); empty without rows."""
    from .forest import forest_svg  # lazy: matplotlib only when the index has a headline to draw

    svg = forest_svg(rows, run_name)
    return f"<figure class='forest'>{svg}</figure>" if svg else ""


def _answer_html(run: Path, params: ExperimentParams) -> str:
    """The index's opening: the forest plot, the paragraph built from the numbers, the compact table and the
    paper's own table — all views of ``headline.build`` — or why there is no headline yet."""
    found = headline.build(run, params.eval.task_groups, variants=list(params.variants),
                           reference="no_mitigation" if "no_mitigation" in params.variants else None,
                           control=params.control is not None)
    if found is None:
        return "<p class='warn'>No headline yet: the base model and at least one checkpoint must be evaluated (notebook 03).</p>"
    ctl = found["control"]
    parts = ["<h2>What continued pre-training changed</h2>",
             _forest_svg(found["forest"], params.run_name),
             "<p class='caption'>Each row: the change at the final checkpoint "
             f"({found['final']['tokens']:,} tokens) with its 95% interval, against the base"
             + (" and against the same-budget control run" if ctl else "")
             + "; filled markers are significant after adjustment within their family of tests, hollow ones are not.</p>",
             "<ul class='answer'>" + "".join(f"<li>{html.escape(s)}</li>" for s in found["paragraph"]) + "</ul>",
             "<h3>The same rows as numbers</h3>",
             "<p class='caption'>Accuracy in %, its change in points; bits per byte: lower is better. Each change is "
             "printed to the precision its standard error supports; <i>p (adj.)</i> is adjusted within its family "
             "(Benjamini–Hochberg; Holm below 5 tests)."
             + (" <i>vs control</i>: continued − control, paired; the reading uses it." if ctl else "") + "</p>",
             html_table(found["compact"]),
             "<h3>The paper's table</h3>",
             "<p class='caption'>As the seed paper reports it: accuracy of each benchmark at the base and after continued "
             "pre-training, the change in points and in percent of the base"
             + (", and the control run's accuracy" if ctl else "") + ". The evidence for each change is above.</p>",
             html_table(found["paper"], numeric_from=2)]
    return "\n".join(parts)


def _headline_html(run: Path, params: ExperimentParams | None = None) -> str:
    """The headline (``_answer_html``), the full table folded away with how to read it, and the corpora."""
    parts = []
    try:
        if params is not None:
            parts.append(_answer_html(run, params))
        control = params.control if params else None
        table = headline_table(run, params.eval.task_groups if params else None, control=control is not None)
        if table is not None and len(table):
            with_control = "vs control ± SE" in table.columns
            parts.append(f"<details><summary>Full table: every measure, both p-values, detectable effects "
                         f"({len(table)} rows)</summary>"
                         "<p>Paired over the same items and documents: Student's t (items: n − 1 df; documents: "
                         "clustered, effective documents − 1 df), McNemar's exact test for accuracy. <i>p (adjusted)</i>: "
                         "within its family of tests (Benjamini–Hochberg; Holm below 5 tests), the p every reading "
                         "uses. <i>MDE (80% power)</i>: the change this comparison would find 80% of the time. A "
                         f"held-out set of fewer than {MIN_DOCUMENTS} documents <i>cannot be tested</i>. Gold bits/byte: "
                         "the correct answer's −log₂ p per UTF-8 byte (lower is better).</p>"
                         + (_control_note(control) if with_control else _no_control_note(control))
                         + "<div class='scroll'>"
                         + table.to_html(classes="table wide", index=False, na_rep="—",
                                         formatters={c: _p_cell for c in table.columns if c.startswith("p")},
                                         float_format=lambda x: f"{x:.4g}")
                         + "</div></details>")
    except ImportError:
        pass
    except Exception as err:  # noqa: BLE001 - a missing result must not hide the rest of the index
        parts.append(f"<p class='warn'>Headline unavailable: {html.escape(str(err))}</p>")
    explore_json = run / "data" / "explore.json"
    if explore_json.is_file():
        parts.append("<h2>Corpora</h2><div class='scroll'>"
                     + summary_table(json.loads(explore_json.read_text())).to_html(classes="table", na_rep="—")
                     + "</div>")
    return "\n".join(parts)


def _p_cell(v) -> str:
    """A p-value cell of the full table: "< 0.001" below that; words (cannot be tested) as they are."""
    return p_value(v) if isinstance(v, float) else str(v)


def _control_note(control) -> str:
    """What the "vs control" columns mean, for the index."""
    return ("<p><b>Control</b>: the same recipe and token budget trained on "
            f"<code>{html.escape(control.corpus)}</code> text instead of the domain"
            f"{' (' + html.escape(control.description) + ')' if control.description else ''}, evaluated on the same "
            "items and documents. <i>vs control</i>: continued − control, paired. <i>reading</i> (each p adjusted within "
            "its family): <b>domain-specific</b> only where continued − control is significant; <b>generic</b> only "
            "where continued − base is significant and the control's own change (control − base) is significant in "
            "the same direction (any training does it); <b>inconclusive</b>, with the interval of continued − control, "
            "where continued − base is significant but the control's own change is not; <b>not detected</b> "
            "otherwise, with each comparison's minimum detectable effect at 80% power.</p>")


def _no_control_note(control) -> str:
    if control is None:
        return ("<p class='warn'>No control run (<code>control:</code> is not set): a change against the base may be "
                "generic — caused by any training of this recipe — rather than by the domain.</p>")
    return "<p class='warn'>The control run has no evaluation at the final checkpoint yet (notebook 05 runs it).</p>"


def _held_out_html(run: Path) -> str:
    """The held-out sets every held-out number describes: documents and composition (notebook 02 has more)."""
    path = Path(run) / "data" / "manifest.json"
    rows = held_out_rows(json.loads(path.read_text())) if path.is_file() else []
    if not rows:
        return ""
    return ("<h2>Held-out sets</h2><p>Uniform random samples (smallest hash of seed and id) of the documents "
            "read; never trained on.</p>" + html_table([{k: "—" if v is None else v for k, v in r.items()} for r in rows]))


#: The index's style: one readable column that fits a phone (390 px) without sideways scrolling; a table
#: wider than a narrow screen scrolls inside its own box, never the page.
INDEX_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:1.6em}table{border-collapse:collapse;margin:.5em 0 1em;font-size:.86em}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}td{overflow-wrap:anywhere}
th{background:#f4f4f4}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.scroll{max-width:100%;overflow-x:auto}figure{margin:1em 0}svg,img{max-width:100%;height:auto}
.caption{color:#555;font-size:.9em}ul.answer li{margin:.3em 0}details{margin:1em 0}summary{cursor:pointer;font-weight:600}
.ok{color:#1b7a3a}.bad{color:#b00020;font-weight:bold}.warn{color:#9a5800}
pre{background:#f6f6f6;padding:1em;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85em}
table.wide{font-size:.78em}"""


def write_index(params: ExperimentParams, report_dir: Path, run: Path, records: list[NotebookRecord],
                prov: dict) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in records:
        link = f"<a href='{html.escape(r.html)}'>{html.escape(r.name)}</a>" if r.html else html.escape(r.name)
        cls = "ok" if r.status in ("ok", "reused") else "bad"
        rows.append(f"<tr><td>{link}</td><td class='{cls}'>{html.escape(r.status)}</td>"
                    f"<td class=num>{r.seconds:.0f}</td><td>{html.escape(r.error)}</td></tr>")
    total = sum(r.seconds for r in records)
    git = prov["git"]
    pkgs = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in prov["packages"].items())
    hw = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in prov["hardware"].items())
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>cpt · {html.escape(params.run_name)}</title>
<style>{INDEX_CSS}</style>
</head><body>
<h1>cpt report · {html.escape(params.run_name)}</h1>
<p>{html.escape(params.description)}</p>
{_headline_html(run, params)}
{_held_out_html(run)}
<h2>Notebooks</h2>
<div class='scroll'><table><tr><th>report</th><th>status</th><th>wall time (s)</th><th>error</th></tr>{''.join(rows)}
<tr><td><b>total</b></td><td></td><td class=num><b>{total:.0f}</b></td><td></td></tr></table></div>
<h2>Provenance</h2>
<p>Generated {html.escape(prov['time'])} from <code>{html.escape(str(prov['params_file']))}</code>{html.escape(_overrides_text(prov))};
git commit <code>{html.escape(git['commit'])}</code>{' <span class="warn">(with uncommitted changes)</span>' if git['dirty'] else ''};
run directory <code>{html.escape(str(run))}</code>.</p>
<h3>Hardware</h3><div class='scroll'><table>{hw}</table></div>
<details><summary>Packages</summary><div class='scroll'><table>{pkgs}</table></div></details>
<details><summary>Resolved parameters</summary><pre>{html.escape(yaml.safe_dump(params.model_dump(mode='json'), sort_keys=False))}</pre></details>
</body></html>"""
    out = report_dir / "index.html"
    atomic_write(out, page)
    atomic_write_json(report_dir / "index.json", {"records": [asdict(r) for r in records], "provenance": prov}, indent=1)
    return out
