"""Reading a parameter file: YAML, ``extends:`` chains, ``--set`` overrides, schema errors as lines.

Loading reports *every* problem at once, each with its key path and what is allowed, so a typo costs
one run, not five: the schema's, then the file's own contradictions and what it says about the world
(``config.checks``). ``step_fingerprint`` hashes the subset of parameters a pipeline step depends on,
which is how a finished step knows it can be skipped.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
import warnings
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Sequence, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from ..atomic import atomic_write
from ..errors import CptError
from .checks import consistency_problems, did_you_mean, environment_problems, token_budget_notes
from .schema import ExperimentParams, RecordParams


class ParamsWarning(UserWarning):
    """A parameter file is valid but probably not what was meant (e.g. training repeats data)."""


class ParamsError(CptError, ValueError):
    """A parameter file is wrong; the message lists every problem with its key path.

    Built from ``origin`` and ``problems``, the message reads "<file>: N problems:" followed by one
    bullet per problem, and ``problems`` (what the CLI prints) prefixes each with the file.
    """

    def __init__(self, message: str = "", problems: list[str] | None = None, origin: str | None = None):
        if problems is not None and origin is not None:
            count = len(problems)
            message = message or f"{origin}: {count} problem{'s' if count != 1 else ''}:\n  - " + "\n  - ".join(problems)
            problems = [f"{origin}: {p}" for p in problems]
        super().__init__(message, problems)



# ------------------------------------------------------------------------------------------- loading
#: Keys whose mapping an overriding file replaces as a whole (a child's variants, task groups, replay mixture
#: and held-out registers are its own: merging them would add the parent's registers to a small child).
REPLACED_WHOLE = {"variants", "task_groups", "replay_mixture", "registers"}
#: The corpus kind a mapping without ``kind`` has (``DataParams._default_kind``).
DEFAULT_CORPUS_KIND = "packaged_wiki"


def _switches_kind(base: dict, override: dict) -> bool:
    """True when ``override`` names another ``kind`` than ``base``: the parent's keys belong to the
    other kind (``topics`` means nothing to a ``files`` corpus), so the child's mapping replaces it."""
    return "kind" in override and override["kind"] != base.get("kind", DEFAULT_CORPUS_KIND)


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if (isinstance(value, dict) and isinstance(out.get(key), dict) and key not in REPLACED_WHOLE
                and not _switches_kind(out[key], value)):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _yaml_error_line(err: "yaml.YAMLError") -> str:
    """A YAML error in one line: what went wrong and where (PyYAML's message spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    what = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(err, "context", None)
    return f"{what}{where}" + (f" ({context})" if context else "")


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 scalars, for parameter files and ``--set`` values alike: PyYAML follows YAML 1.1, where
    ``1e6`` and ``3e-4`` are *strings* (1.1 floats need a dot), ``010`` is octal, ``2024-01-01`` a date and
    ``on``/``off``/``yes``/``no`` are booleans — so ``token_budget: 1e6`` failed as "not a valid integer" and
    ``fused_adamw: off`` reached its Literal field as ``False``. Here only true/false are booleans (a
    boolean field still accepts on/off/yes/no, via pydantic) and ``1e6`` is the number a reader sees."""


_YAML11_ONLY = ("bool", "int", "float", "timestamp")
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] not in _YAML11_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag, _regex, _first in (
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        ("int", r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$", "-+0123456789"),
        ("float", r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
                  r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789.")):
    _Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_regex), list(_first))


class _QuotingDumper(yaml.SafeDumper):
    """Writes a string in quotes wherever YAML 1.1 *or* 1.2 would read it as something else: a run named
    ``1e6`` must come back from its recorded ``params.yaml`` as that name, not the number 1,000,000 (1.2),
    and ``on`` as the word for any YAML reader (1.1)."""


_QuotingDumper.yaml_implicit_resolvers = {
    first: list(yaml.SafeDumper.yaml_implicit_resolvers.get(first, []))
    + [r for r in _Yaml12Loader.yaml_implicit_resolvers.get(first, [])
       if r not in yaml.SafeDumper.yaml_implicit_resolvers.get(first, [])]
    for first in set(yaml.SafeDumper.yaml_implicit_resolvers) | set(_Yaml12Loader.yaml_implicit_resolvers)}


def dump_params_yaml(data: dict) -> str:
    """``data`` (a parameter mapping) as YAML that ``load_params`` and any YAML reader read back unchanged."""
    return yaml.dump(data, Dumper=_QuotingDumper, sort_keys=False)


class _UniqueKeyLoader(_Yaml12Loader):
    """PyYAML keeps the last of two equal keys without a word, so a second ``train:`` section would
    silently discard the first; here it is an error at the second key's line."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # PyYAML's own error follows
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice in one mapping (first at line {first[key]}; "
                                    "YAML would keep only the last)", key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _not_a_parameter_file(path: Path) -> str:
    """Why ``path`` is no parameter file, with the files the user may have meant."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.yaml"))
        return f"{path} is a folder; name a parameter file" + (f" in it: {', '.join(found)}" if found else "")
    siblings = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
    close = difflib.get_close_matches(path.name, siblings, n=1)
    return f"parameter file not found: {path}" + (f" (did you mean {path.parent / close[0]}?)" if close else "")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """Read a parameter file, resolving ``extends:`` chains (relative to the file's folder)."""
    path = path.resolve()
    if path in seen:
        raise ParamsError(f"{path}: 'extends' forms a cycle: {' -> '.join(map(str, seen + (path,)))}")
    if not path.is_file():
        raise ParamsError(_not_a_parameter_file(path))
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {_yaml_error_line(err)}") from None
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text (byte {err.start}); save the parameter file as UTF-8") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    if seen:  # a parent's record describes the parent's run, not this file
        data.pop(RECORD_KEY, None)
    parent = data.pop("extends", None)
    if parent is not None:
        data = _deep_merge(_read_yaml(path.parent / parent, seen + (path,)), data)
    return data


def _unwrap(annotation: Any) -> Any:
    """Reduce Optional/Annotated/Union annotations to a model class, or a list of union members."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Union or origin is UnionType:  # Optional[X] and X | None
        members = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return members[0] if len(members) == 1 else members
    return annotation


#: Names other trainers (HF Trainer, LitGPT, Axolotl) use for our keys: spelling is not the only typo.
KEY_ALIASES = {"learning_rate": "lr", "batch_size": "micro_batch_size",
               "per_device_train_batch_size": "micro_batch_size", "gradient_accumulation_steps": "grad_accum_steps",
               "max_grad_norm": "grad_clip", "warmup_steps": "warmup_tokens", "lr_scheduler_type": "schedule",
               "max_seq_length": "seq_len", "block_size": "seq_len", "report_to": "trackers"}


def _closest_key(key: str, allowed: list[str]) -> str | None:
    """The allowed key a wrong one most likely meant: a known alias, else the closest spelling."""
    if KEY_ALIASES.get(key) in allowed:
        return KEY_ALIASES[key]
    close = difflib.get_close_matches(key, allowed, n=1)
    return close[0] if close else None


def _error_lines(err: ValidationError, root: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per schema error: its key path, and what is allowed (a variant's ``train`` overrides
    are named by their variant first, as the reports name them)."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        lead = f"variant '{loc[1]}': " if len(loc) > 3 and loc[0] == "variants" and loc[2] == "train" else ""
        lines += [lead + line for line in _error_line(e, loc, root, prefix)]
    return lines


def _kind_of_member(cls: type[BaseModel]) -> Any:
    return getattr(cls.model_fields.get("kind"), "default", None)


def _walk_location(root: type[BaseModel], loc: tuple) -> tuple[tuple, type[BaseModel] | None, list, str | None]:
    """Walk the schema along an error location: the location as the user wrote it (pydantic puts a
    discriminated union's tag into the path, ``data.domain.packaged_wiki.paths`` for the file's
    ``data.domain.paths``: dropped), the model class that owns its last key, and the union's members and
    tag where the path went through one."""
    cls: Any = root
    skip_key, shown, members, tag, owner = False, [], [], None, None
    for i, part in enumerate(loc):
        if i == len(loc) - 1:
            owner = cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if skip_key:  # the user's own key in a dict[str, Section] (e.g. a variant's name)
            skip_key = False
            shown.append(part)
            continue
        if isinstance(cls, list):  # discriminated union: the tag names the member
            member = next((c for c in cls if _kind_of_member(c) == part), None)
            if member is not None:
                members, tag, cls = cls, str(part), member
                continue
            cls = None
        shown.append(part)
        if isinstance(cls, type) and issubclass(cls, BaseModel) and str(part) in cls.model_fields:
            annotation = cls.model_fields[str(part)].annotation
            if get_origin(annotation) is dict:
                annotation, skip_key = get_args(annotation)[1], True
            cls = _unwrap(annotation)
        else:
            cls = None
    return tuple(shown), owner, members, tag


def _error_line(e: dict, loc: tuple, root: type[BaseModel], prefix: str) -> list[str]:
    shown_loc, owner, members, tag = _walk_location(root, loc)
    key = ".".join(str(p) for p in ((prefix,) if prefix else ()) + shown_loc) or "(top level)"
    got = e.get("input")
    if e["type"] == "extra_forbidden":
        allowed = sorted(k for k, f in owner.model_fields.items() if not f.exclude) if owner else []
        close = _closest_key(str(loc[-1]), allowed)
        kinds = [str(_kind_of_member(m)) for m in members if str(loc[-1]) in m.model_fields]
        other = f"; '{loc[-1]}' is a key of kind {' / '.join(kinds)}: set `kind:` to say which" if tag and kinds else ""
        return [f"{key}: unknown key{f' for kind {tag}' if tag else ''}; allowed here: {', '.join(allowed)}"
                + (f" (did you mean '{close}'?)" if close else "") + other]
    if e["type"] == "union_tag_invalid":  # a corpus kind (or any tagged section) that does not exist
        allowed = re.findall(r"'([^']*)'", e.get("ctx", {}).get("expected_tags", ""))
        value = e.get("ctx", {}).get("tag")
        return [f"{key}.kind: unknown kind {value!r}; allowed: {', '.join(sorted(allowed))}{did_you_mean(value, allowed)}"]
    if e["type"] == "literal_error":
        allowed = re.findall(r"'([^']*)'", e.get("ctx", {}).get("expected", ""))
        return [f"{key}: {e['msg']} (got {got!r}){did_you_mean(got, allowed)}"]
    if e["type"] == "value_error" and not loc:  # a model validator's own lines, each with its key
        return e["msg"].removeprefix("Value error, ").splitlines()
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return [f"{key}: {e['msg'].removeprefix('Value error, ')}{shown}"]  # a field validator's words, as they are


def _schema(data: dict, origin: str, sets: Sequence[str] = ()) -> ExperimentParams:
    try:
        return ExperimentParams.model_validate(data)
    except ValidationError as err:
        raise ParamsError(problems=_tag_sets(_error_lines(err, ExperimentParams), sets), origin=origin) from None


def _check(params: ExperimentParams, origin: str, environment: bool, sets: Sequence[str] = ()) -> ExperimentParams:
    for note in token_budget_notes(params):
        warnings.warn(f"{origin}: {note}", ParamsWarning, stacklevel=3)
    problems = consistency_problems(params)
    if environment:
        problems += environment_problems(params)
    if problems:
        raise ParamsError(problems=_tag_sets(problems, sets), origin=origin)
    return params


def validate_params(data: dict, origin: str = "<parameters>") -> ExperimentParams:
    """Validate a mapping; raise ``ParamsError`` listing every problem with its key path.

    The schema comes first (a wrong type leaves nothing to cross-check); then values are checked
    against each other (``consistency_problems``), all at once.
    """
    return _check(_schema(data, origin), origin, environment=False)


def load_params(path: str | Path, overrides: dict | None = None, check: bool = True,
                sets: Sequence[str] = ()) -> ExperimentParams:
    """Load a parameter file (following ``extends:``), apply ``overrides`` and ``sets`` and validate.

    ``sets`` are the command line's ``--set KEY=VALUE`` (``apply_sets``), applied to the merged mapping
    before the schema sees it, so they get the file's error messages; they are recorded in
    ``recorded.overrides`` (after those of a resolved ``params.yaml`` being re-loaded).
    ``run_name`` defaults to the file's stem, so ``params/quickstart.yaml`` runs in ``runs/quickstart``.
    With ``check`` (the default, so every command does it before any work) what the file says about
    the world is checked too, in the same list of problems: corpus files and globs, a ``resume``
    checkpoint, task names and the model's maximum positions (``config.checks.environment_problems``).
    """
    path = Path(path)
    data = _read_yaml(path)
    data.setdefault("run_name", path.stem)
    if overrides:
        data = _deep_merge(data, overrides)
    data = apply_sets(data, sets)
    params = _schema(data, str(path), sets)
    # a resolved params.yaml names the file it came from: relative corpus paths still resolve from there
    prior = params.recorded
    params.recorded = RecordParams(params_file=prior.params_file or str(path.resolve()),
                                   overrides=[*prior.overrides, *sets])
    params.source_path = params.recorded.params_file
    return _check(params, str(path), environment=check, sets=sets)


# ------------------------------------------------------------------------------ command-line overrides
#: The key of a resolved ``params.yaml``'s record (``RecordParams``); dropped from ``extends:`` parents.
RECORD_KEY = "recorded"


SET_USAGE = "expected KEY=VALUE with a dotted key, e.g. --set train.lr=3e-4"


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` → ``(["train", "lr"], 0.0003)``; the value is YAML (lists, null, booleans)."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep:
        raise ParamsError(f"--set {item}: no '=' ({SET_USAGE})")
    if not all(p.strip() for p in parts):
        raise ParamsError(f"--set {item}: {'empty key' if not key.strip() else f'empty part in key {key.strip()!r}'} "
                          f"({SET_USAGE})")
    try:
        value = yaml.load(text.strip(), Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ParamsError(f"--set {item}: the value is not valid YAML: {_yaml_error_line(err)}") from None
    return [p.strip() for p in parts], value


def apply_sets(data: dict, sets: Sequence[str]) -> dict:
    """Apply ``--set KEY=VALUE`` overrides, in order, to a raw parameter mapping (after ``extends:``).

    A dotted key creates the sections it names; the value replaces what was at the key (a mapping value
    replaces the whole mapping). Setting a corpus's ``kind`` to another kind drops the file's keys of
    that corpus, as a child file does (``topics`` means nothing to a ``files`` corpus), but keeps what
    other ``--set`` options wrote there. Unknown keys are left for the schema to report.
    """
    data = copy.deepcopy(data)
    written: list[tuple[str, ...]] = []
    for item in sets:
        parts, value = parse_set(item)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                here = ".".join(parts[: i + 1])
                raise ParamsError(f"--set {item}: {here} is a value ({child!r}), not a section with keys; "
                                  f"set it whole with --set {here}=VALUE")
            node = child
        last = parts[-1]
        if last == "kind" and value != node.get("kind", DEFAULT_CORPUS_KIND):
            prefix = tuple(parts[:-1])
            for key in list(node):
                if not any(w[: len(prefix) + 1] == prefix + (key,) for w in written):
                    del node[key]
        node[last] = value
        written.append(tuple(parts))
    return data


def _tag_sets(problems: list[str], sets: Sequence[str]) -> list[str]:
    """Name the ``--set`` behind a problem, so an error in an override does not send the user to the file."""
    if not sets:
        return problems
    keys = []
    for item in sets:
        parts = parse_set(item)[0]
        # a corpus's kind decides which keys it needs: its problems are the kind's too
        keys.append((".".join(parts[:-1] if parts[-1] == "kind" and len(parts) > 1 else parts), item))
    tagged = []
    for line in problems:
        where = re.sub(r"^variant '[^']*': ", "", line).split(":", 1)[0].split("[", 1)[0]  # a variant's lead
        hits = [item for key, item in keys
                if where == key or where.startswith(key + ".") or key.startswith(where + ".")]
        tagged.append(f"{line} (from --set {hits[-1]})" if hits else line)
    return tagged


# ------------------------------------------------------------------------------------ step hashing
#: Which top-level sections each data step depends on; a change elsewhere does not invalidate it.
#: Training and evaluation go further and key on the prepared data's *content hash* (train.py,
#: evaluate.py), so re-preparing identical data never invalidates a finished run.
STEP_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "explore": ("model", "data", "seed"),
    "preprocess": ("model", "data", "preprocess", "seed", "control"),
}


def step_fingerprint(params: ExperimentParams, step: str, *extra_keys: str) -> str:
    """A short content hash of the parameters ``step`` depends on (stable across key order)."""
    if step not in STEP_DEPENDENCIES:
        raise ParamsError(f"unknown step '{step}'; allowed: {sorted(STEP_DEPENDENCIES)}")
    dump = params.model_dump(mode="json")
    subset = {k: dump[k] for k in STEP_DEPENDENCIES[step] + tuple(extra_keys)}
    blob = json.dumps(subset, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_resolved(params: ExperimentParams, path: Path) -> None:
    """Freeze the resolved parameters (every default spelled out) next to the run's outputs."""
    atomic_write(path, dump_params_yaml(params.model_dump(mode="json")))
