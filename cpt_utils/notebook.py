"""The first cell of every notebook: validate the parameters, fix the environment, show the config.

Keeping this in one function means a notebook's set-up is one line that a test reaches, and every
report starts with the resolved configuration it was run with.
"""

from __future__ import annotations

import html
import logging
import os
import warnings
from pathlib import Path

import yaml

from . import plots
from .config import ExperimentParams, load_params, save_resolved
from .errors import CptError, error_lines
from .paths import configure_environment, run_dir as make_run_dir


def setup(params_path: str | Path, run_name: str | None = None, show: bool = True) -> tuple[ExperimentParams, Path]:
    """Load and validate ``params_path``, prepare ``runs/<run>/`` and return ``(params, run_dir)``.

    ``run_name`` overrides the name derived from the file (the pipeline passes it explicitly).
    """
    show_errors_as_lines()
    overrides = {"run_name": run_name} if run_name else None
    params = load_params(params_path, overrides=overrides)
    configure_environment(offline=params.offline)
    run_dir = make_run_dir(params.run_name)
    save_resolved(params, run_dir / "params.yaml")
    plots.apply_style()
    inline_svg()
    quiet_libraries()
    if show:
        _show_config(params, run_dir)
    return params, run_dir


def inline_svg() -> None:
    """Inline figures as SVG, so the rendered HTML is crisp at any zoom and in print."""
    try:
        from IPython import get_ipython  # lazy: IPython exists only where a notebook runs
        from matplotlib_inline.backend_inline import set_matplotlib_formats  # lazy: as above
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("svg")


def show_errors_as_lines() -> None:
    """In a notebook, an expected failure (``CptError``) shows the same ``error: …`` lines as the ``cpt``
    command instead of a traceback; the cell still fails, so papermill and the pipeline see the error.
    ``CPT_DEBUG=1`` keeps the traceback."""
    try:
        from IPython import get_ipython  # lazy: IPython exists only where a notebook runs
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or os.environ.get("CPT_DEBUG"):
        return

    def handler(self, etype, value, tb, tb_offset=None):
        stb = [f"error: {line}" for line in error_lines(value)]
        self._showtraceback(etype, value, stb)  # IPython discards the handler's return value: show it here
        return stb

    shell.set_custom_exc((CptError,), handler)


def quiet_libraries() -> None:
    """Keep reports readable: library chatter (weight-loading bars, benign tied-weight warnings,
    lm-eval's per-stage logging) off, errors still shown; our own progress bars stay."""
    import pandas as pd  # lazy: pandas costs ~0.5 s; only a notebook's first cell needs it

    warnings.filterwarnings("ignore", message="IProgress not found")  # no ipywidgets: text bars are fine
    pd.set_option("display.max_colwidth", 200)
    for name in ("lm_eval", "accelerate", "datasets", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging  # lazy: transformers takes seconds to import

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _show_config(params: ExperimentParams, run_dir: Path) -> None:
    try:
        from IPython.display import HTML, Markdown, display  # lazy: IPython exists only in a notebook
    except ImportError:  # plain Python: nothing to show
        return
    display(Markdown(
        f"**Run** `{params.run_name}` · parameters `{params.source_path}` · outputs `{run_dir}`  \n"
        f"model: `{params.model.source}:{params.model.name if params.model.source != 'tiny' else 'tiny config'}` · "
        f"sequence length {params.preprocess.seq_len} · training budget {params.train.token_budget:,} tokens"
    ))
    text = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
    display(HTML(f"<details><summary>Resolved parameters (every default spelled out)</summary>"
                 f"<pre>{html.escape(text)}</pre></details>"))
