"""One executed notebook → one standalone HTML page a person reads in a browser.

The page is the executed notebook (``runs/<run>/notebooks/*.ipynb``, which keeps everything the kernel
printed) less what only the terminal needs: stderr streams (progress bars, warnings, log lines) are
dropped from the rendered copy; errors stay. A small style sheet makes the lab template readable: a
centred column, figures that shrink with the window, compact tables that fit at 1280 px and scroll in
their own box on a phone, wrapped code, styled ``<details>``.
"""

from __future__ import annotations

from pathlib import Path

from .atomic import atomic_write

# nbconvert's lab template: body.jp-Notebook > main > .jp-Cell …; outputs are .jp-OutputArea-output,
# HTML (pandas tables) is .jp-RenderedHTMLCommon, markdown .jp-RenderedMarkdown.
READING_CSS = """<style id="cpt-reading">
body.jp-Notebook { padding: 0 1em; }
body.jp-Notebook > main { width: 100%; max-width: 1100px; margin: 0 auto; box-sizing: border-box; min-width: 0; }
.jp-Notebook .jp-Cell, .jp-Cell-inputWrapper, .jp-Cell-outputWrapper, .jp-OutputArea,
.jp-OutputArea-child, .jp-InputArea { min-width: 0; max-width: 100%; }
.jp-OutputArea-output img, .jp-RenderedImage img, .jp-RenderedHTMLCommon img, .jp-RenderedMarkdown img,
.jp-OutputArea-output svg, .jp-RenderedSVG svg, .jp-RenderedHTMLCommon svg { max-width: 100%; height: auto; }
.jp-RenderedHTMLCommon table { font-size: 0.85em; max-width: 100%; table-layout: auto; margin-left: 0; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { padding: 0.25em 0.5em; white-space: normal;
  overflow-wrap: break-word; }
.jp-RenderedHTMLCommon th { overflow-wrap: anywhere; hyphens: auto; }
.jp-InputArea pre, .jp-InputArea-editor pre, .highlight pre, .jp-RenderedHTMLCommon pre,
.jp-OutputArea-output pre { white-space: pre-wrap; overflow-wrap: anywhere; }
details { border: 1px solid #d0d7de; border-radius: 4px; padding: 0.3em 0.8em; margin: 0.6em 0; background: #fafbfc; }
details > summary { cursor: pointer; font-weight: 600; }
details[open] > summary { margin-bottom: 0.4em; }
@media (max-width: 800px) {
  body.jp-Notebook { padding: 0 0.25em; }
  .jp-RenderedHTMLCommon, .jp-OutputArea-output { overflow-x: auto; max-width: 100%; }
  .jp-RenderedHTMLCommon th { overflow-wrap: normal; }  /* whole words: the table scrolls in its box */
  .jp-InputPrompt, .jp-OutputPrompt { display: none; }
  .jp-Notebook .jp-Notebook-cell { margin-left: 0; margin-right: 0; }
}
</style>
"""

# The lab template marks errors and stderr streams alike (data-mime-type="application/vnd.jupyter.stderr");
# errors get a class of their own, so a reader's check can tell a shown error from leftover stderr.
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block error -%}
<div class="jp-RenderedText jp-OutputArea-output cpt-error" data-mime-type="application/vnd.jupyter.stderr">
<pre>
{{- output.traceback | join('\\n') | ansi2html -}}
</pre>
</div>
{%- endblock error %}
"""


def render_html(executed: Path, html_path: Path, prov: dict | None = None, seconds: float = 0.0,
                status: str = "ok") -> Path:
    """Render an executed notebook to a standalone HTML file (inputs tagged ``hide-input`` hidden,
    stderr dropped, the reading style sheet added)."""
    import nbformat  # lazy: nbformat only when notebooks are run or rendered

    nb = nbformat.read(executed, as_version=4)
    body = notebook_html(nb, executed.stem, prov, seconds, status)
    atomic_write(html_path, body)
    return html_path


def notebook_html(nb, name: str, prov: dict | None = None, seconds: float = 0.0, status: str = "ok") -> str:
    """The page for an in-memory notebook (``nb`` is changed: stderr dropped, provenance appended)."""
    from nbconvert import HTMLExporter  # lazy: nbconvert only when a report is rendered
    from jinja2 import DictLoader  # lazy: nbconvert's template engine only when a report is rendered
    from nbconvert.preprocessors import TagRemovePreprocessor  # lazy: nbconvert only when a report is rendered
    from traitlets.config import Config  # lazy: nbconvert's config only when a report is rendered

    _drop_stderr(nb)
    _collapse_progress_bars(nb)
    if prov is not None:
        nb.cells.append(_provenance_cell(prov, seconds, status))
    config = Config()
    config.TagRemovePreprocessor.remove_input_tags = ("hide-input",)
    # the notebook's default parameters cell is noise in a report: papermill's injected cell shows
    # the values actually used
    config.TagRemovePreprocessor.remove_cell_tags = ("remove-cell", "parameters")
    config.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(config=config, template_name="lab", extra_loaders=[DictLoader({"cpt.html.j2": _TEMPLATE})],
                            template_file="cpt.html.j2")
    exporter.register_preprocessor(TagRemovePreprocessor(config=config), enabled=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": name}})
    return _add_reading_css(body)


def _add_reading_css(page: str) -> str:
    """The style sheet goes last in the head, so it wins over the template's own rules."""
    head_end = page.find("</head>")
    return page[:head_end] + READING_CSS + page[head_end:] if head_end >= 0 else READING_CSS + page


def _drop_stderr(nb) -> None:
    """Progress bars, warnings and log lines are for the terminal and the live notebook; the executed
    notebook in ``runs/`` keeps them. Errors (``output_type: error``) are not streams and stay."""
    for cell in nb.cells:
        if "outputs" in cell:
            cell["outputs"] = [out for out in cell["outputs"]
                               if not (out.get("output_type") == "stream" and out.get("name") == "stderr")]


def _collapse_progress_bars(nb) -> None:
    """A text progress bar redraws itself with carriage returns; a static page shows every redraw as a
    line. Keep only each line's final state, as a terminal would."""
    for cell in nb.cells:
        merged: list = []
        for out in cell.get("outputs", []):  # papermill stores each flush separately: join runs of a stream
            if (merged and out.get("output_type") == "stream" and merged[-1].get("output_type") == "stream"
                    and merged[-1].get("name") == out.get("name")):
                merged[-1]["text"] += out.get("text", "")
            else:
                merged.append(out)
        cell["outputs"] = merged
        for out in merged:
            if out.get("output_type") == "stream" and "\r" in out.get("text", ""):
                lines = []
                for segment in out["text"].split("\n"):
                    redraws = [part for part in segment.split("\r") if part.strip()]
                    lines.append(redraws[-1] if redraws else "")
                out["text"] = "\n".join(lines)


def _provenance_cell(prov: dict, seconds: float, status: str):
    import nbformat  # lazy: nbformat only when notebooks are run or rendered

    pk = ", ".join(f"{k} {v}" for k, v in prov["packages"].items())
    hw = prov["hardware"]
    git = prov["git"]
    text = (
        "---\n**Provenance** — "
        f"parameters `{prov['params_file']}`{_overrides_text(prov, '`')} · "
        f"git `{git['commit'][:12]}`{' (uncommitted changes)' if git['dirty'] else ''} · "
        f"executed {prov['time']} in {seconds:.0f} s ({status})  \n"
        f"hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory_gib']} GiB, GPU: {hw['gpu']}  \n"
        f"packages: {pk}"
    )
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = ["provenance"]
    return cell


def _overrides_text(prov: dict, quote: str = "") -> str:
    """`` with --set a=1 --set b=2`` for a run started with overrides, else empty."""
    sets = prov.get("overrides") or []
    return (" with " + " ".join(f"{quote}--set {item}{quote}" for item in sets)) if sets else ""
