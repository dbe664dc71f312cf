"""The ``cpt`` command. Every knob lives in the parameter file; the command line only says what to do.

    cpt run PARAMS            all notebooks, headless, then reports/<run>/ (the batch user's entry)
    cpt validate PARAMS       check a parameter file and print the resolved configuration
    cpt assets                fetch and verify the offline assets
    cpt prepare PARAMS        preprocessing only (notebook 02's work)
    cpt train PARAMS          training only (also: accelerate launch -m cpt_utils.train PARAMS)
    cpt eval PARAMS [--checkpoint NAME]   evaluate the base model or a checkpoint
    cpt report RUN            re-render reports/<run>/ from the executed notebooks in runs/<run>/
    cpt export RUN [--checkpoint NAME] [--format hf|gguf] [--dtype f32|f16|bf16] [--out DIR]
                              a checkpoint as a Hugging Face folder or a GGUF file, with a model card

run, validate, prepare, train and eval take `--set KEY=VALUE` (repeatable) to change one value without
editing the file: `--set train.lr=3e-4 --set eval.limit=100`. Values are YAML (`[a, b]`, `null`, `true`);
the run's resolved runs/<run>/params.yaml records them.

Every command checks its parameter file before any work. A problem is printed as one `error:` line
each (key, file or cause) with a non-zero exit; `--debug` (or CPT_DEBUG=1) adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from .errors import CptError, error_lines
from .paths import configure_environment


def _cmd_validate(args: argparse.Namespace) -> int:
    from .config import dump_params_yaml, load_params  # lazy: building the schema takes ~1 s; cpt --help must not pay it

    params = load_params(args.params, sets=args.sets)
    print(dump_params_yaml(params.model_dump(mode="json")))
    applied = f" with {len(args.sets)} --set override{'s' if len(args.sets) != 1 else ''}" if args.sets else ""
    print(f"OK: {args.params}{applied} is valid (run name '{params.run_name}')")
    return 0


def _cmd_assets(args: argparse.Namespace) -> int:
    from .assets import describe, fetch_all  # lazy: tarfile/zipfile & co cost ~0.25 s; cpt --help must not

    for name, path in fetch_all().items():
        print(f"{name:24s} {path}")
    for row in describe():
        print(f"  {row['package']}: {row['what']} ({row['license']})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline  # lazy: the pipeline imports train (~5 s with torch)

    return run_pipeline(args.params, only=args.only, force=args.force, sets=args.sets)


def _cmd_report(args: argparse.Namespace) -> int:
    from .pipeline import render_run  # lazy: the pipeline imports train (~5 s with torch)

    return render_run(args.run)


def _resolved(args: argparse.Namespace) -> str:
    """The parameters a working command runs with: the file with its ``--set`` overrides, checked, then
    written to runs/<run>/params.yaml (which records them); that file is what the step reads."""
    from .config import load_params  # lazy: building the schema takes ~1 s; cpt --help must not pay it
    from .pipeline import freeze_params  # lazy: the pipeline imports train (~5 s with torch)

    return str(freeze_params(load_params(args.params, sets=args.sets)))


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .preprocess import main  # lazy: the corpus, dedup and packing stack; other commands must not pay it

    main(_resolved(args))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import main  # lazy: importing train costs ~5 s (torch)

    main(_resolved(args))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import main  # lazy: evaluation's modules (packing, scoring) are heavy; other commands must not pay them

    main(_resolved(args), checkpoint=args.checkpoint)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import main  # lazy: only `cpt export` needs the export modules

    return main(args.run, checkpoint=args.checkpoint, fmt=args.format, out=args.out, dtype=args.dtype)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cpt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also: CPT_DEBUG=1)")
    # accepted after the command too (`cpt prepare p.yaml --debug`); SUPPRESS keeps the main flag's value
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    # the commands that read a parameter file also take overrides of it
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                           help="override one parameter, e.g. --set train.lr=3e-4 (repeatable; VALUE is YAML)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", parents=[debug, overrides], help="execute the notebooks with PARAMS and render reports/<run>/")
    p.add_argument("params")
    p.add_argument("--only", nargs="*", help="notebook numbers or names to run (default: all)")
    p.add_argument("--force", action="store_true", help="re-execute notebooks even if their outputs are current")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", parents=[debug, overrides], help="validate PARAMS and print the resolved configuration")
    p.add_argument("params")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("assets", parents=[debug], help="fetch and verify the offline assets")
    p.set_defaults(func=_cmd_assets)

    p = sub.add_parser("prepare", parents=[debug, overrides], help="preprocess the corpora of PARAMS into runs/<run>/data")
    p.add_argument("params")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", parents=[debug, overrides], help="continued pre-training with PARAMS")
    p.add_argument("params")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", parents=[debug, overrides], help="evaluate the base model (default) or a checkpoint")
    p.add_argument("params")
    p.add_argument("--checkpoint", default="base", help="'base', 'all', or a checkpoint name under runs/<run>/checkpoints")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("report", parents=[debug], help="render reports/<run>/ from runs/<run>/notebooks")
    p.add_argument("run")
    p.set_defaults(func=_cmd_report)

    # choices are checked by cpt_utils.export (one `error:` line naming the allowed values, exit 2)
    p = sub.add_parser("export", parents=[debug], help="export a checkpoint (Hugging Face folder or GGUF) with a model card")
    p.add_argument("run", help="a run name under runs/ or a run directory")
    p.add_argument("--checkpoint", default=None, help="a checkpoint name under runs/<run>/checkpoints (default: the final one)")
    p.add_argument("--format", default="hf", help="hf (safetensors folder) or gguf (one llama.cpp file); default hf")
    p.add_argument("--dtype", default=None, help="f32, f16 or bf16 (default: f32 for hf, f16 for gguf)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<run>/export/<checkpoint>-<format>)")
    p.set_defaults(func=_cmd_export)
    return parser


def _debug_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("CPT_DEBUG", "").lower() not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    """Run one command; expected failures (``CptError``) are one ``error:`` line per problem, exit 2;
    anything else is one line too (exit 1), with the traceback only under ``--debug``/``CPT_DEBUG``."""
    args = build_parser().parse_args(argv)
    # caches only; each command that loads a parameter file then forbids the hub when it says offline
    configure_environment(offline=False)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place that turns any failure into a message
        if _debug_requested(args):
            traceback.print_exc()
        sys.stdout.flush()
        for line in error_lines(err):
            print(f"error: {line}", file=sys.stderr)
        return 2 if isinstance(err, CptError) else 1


if __name__ == "__main__":
    sys.exit(main())
