"""The ``hub`` kind: a Hugging Face dataset, streamed (e.g. FineWeb-Edu with its ``int_score`` filter).

Needs internet (never used by tests, which stand a local dataset in). The stream saves its own place
(``datasets``' iterable state), so a resumed preparation reads no record twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from ..documents import Document, ProblemReport
from .base import CorpusKind, Reading, text_problem

if TYPE_CHECKING:
    from ..config import HubCorpus


class HubDataset(CorpusKind):
    """``kind: hub``: ``dataset``/``config`` [``split``], optionally filtered by ``min_int_score``."""

    kind = "hub"

    def documents(self, reading: Reading) -> Iterator[Document]:
        yield from iter_hub(self.spec, reading.problems, reading.saved, reading.position)

    def describe(self, seed: int | None) -> str:
        spec = self.spec
        score = f", int_score ≥ {spec.min_int_score}" if spec.min_int_score is not None else ""
        return f"hub dataset {spec.dataset}{'/' + spec.config if spec.config else ''} [{spec.split}]{score}"

    def own_place(self, position: dict) -> dict | None:
        """The open dataset's own state and the records read (what ``iter_hub`` restarts from)."""
        if position.get("dataset") is not None and hasattr(position["dataset"], "state_dict"):
            return {"dataset": position["dataset"].state_dict(), "records": position["records"]}
        return None

    @classmethod
    def provenance(cls, source: dict) -> dict:
        return {"dataset": source["dataset"], "licence": "see the dataset's card on the hub"}


def iter_hub(spec: HubCorpus, problems: ProblemReport, state: dict | None = None,
             position: dict | None = None) -> Iterator[Document]:
    """A Hugging Face dataset, streamed; FineWeb-Edu's ``int_score`` filter applied on the fly.

    ``state`` (a saved ``position``) restarts the stream after the records already read; ``position``
    is kept current: the dataset (whose ``state_dict()`` is the stream's place) and the records read.
    """
    from datasets import load_dataset  # lazy: heavy, and only hub corpora need it

    ds = load_dataset(spec.dataset, spec.config, split=spec.split, streaming=spec.streaming)
    start = 0
    if state is not None:
        ds.load_state_dict(state["dataset"])
        start = state["records"]
    position = position if position is not None else {}
    position.update(dataset=ds, records=start)
    for i, record in enumerate(ds, start):
        position["records"] = i + 1
        problem = text_problem(record, spec.text_field)
        if problem is not None:
            problems.add(problem, f"{spec.dataset}:{i}")
            continue
        text = record[spec.text_field]
        if spec.min_int_score is not None and (record.get("int_score") or 0) < spec.min_int_score:
            continue
        meta = {k: record[k] for k in ("url", "int_score", "score", "language") if k in record}
        yield Document(id=str(record.get("id", i)), text=text, source=spec.dataset, meta=meta)
