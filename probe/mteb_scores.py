"""MTEB tasks run for probe's text encoders, as the text correlate SAIL found predictive of alignment.

The registry's ``mteb_avg`` values are published averages typed in with their source; an encoder that
has none (all-roberta-large-v1) could not be correlated. With the ``mteb`` extra installed, chosen
MTEB tasks run for each text encoder through ``mteb.evaluate`` (MTEB's own task definitions, data and
scoring), and each encoder's record holds every task's main score and their mean (``text/mteb``).
MTEB downloads a task's data on first use: that needs a network, as MTEB itself does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.encoder_spec import EncoderSpec
from probe.errors import ProbeError
from probe.records import keys

log = logging.getLogger("probe")

DATASET = "mteb"


def mteb_tasks(tasks: Sequence[Any]) -> list[Any]:
    """MTEB task objects for ``tasks`` (names, or task objects as given), or one line naming the
    first unknown name and what it is close to."""
    try:
        import mteb
    except ImportError:
        raise ProbeError("running MTEB tasks needs the mteb package: pip install 'probe[mteb]'") from None
    if not tasks:
        raise ProbeError("no MTEB task named; give at least one (e.g. STSBenchmark)")
    found = []
    for task in tasks:
        if not isinstance(task, str):
            found.append(task)
            continue
        try:
            found.append(mteb.get_task(task))
        except KeyError:
            import difflib

            close = difflib.get_close_matches(task, [t.metadata.name for t in mteb.get_tasks()], n=3, cutoff=0.6)
            raise ProbeError(f"unknown MTEB task {task!r}" + (f"; did you mean {', '.join(close)}?" if close else
                             "; `python -c 'import mteb; print([t.metadata.name for t in mteb.get_tasks()])'` "
                             "lists them")) from None
    return found


class _Encoder:
    """probe's text encoder as MTEB's ``EncoderProtocol``: MTEB's batches of ``{"text": [...]}`` in,
    float32 embeddings out, encoded exactly as probe encodes captions."""

    mteb_model_meta = None  # MTEB then describes the model as unnamed; the record names it

    def __init__(self, encoder: Any, batch_size: int) -> None:
        self.encoder, self.batch_size = encoder, batch_size

    def encode(self, inputs: Any, **_: Any) -> np.ndarray:
        from probe.features.batches import encode_inputs

        texts = [text for batch in inputs for text in batch["text"]]
        return encode_inputs(self.encoder, texts, self.batch_size)

    @staticmethod
    def _unit(x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        return self._unit(a) @ self._unit(b).T

    def similarity_pairwise(self, a: Any, b: Any) -> np.ndarray:
        return (self._unit(a) * self._unit(b)).sum(axis=-1)


def identity(spec: EncoderSpec, tasks: Sequence[Any]) -> str:
    import mteb

    from probe.records.identity import identity_digest

    return identity_digest("mteb", model=spec.to_dict(), tasks=sorted(t.metadata.name for t in tasks),
                           mteb=mteb.__version__)


def record_file(results_dir: Path, spec: EncoderSpec, tasks: Sequence[Any]) -> Path:
    import hashlib

    from probe.records.store import record_path

    names = sorted(t.metadata.name for t in tasks)
    tag = names[0] if len(names) == 1 else f"{len(names)}-tasks-{hashlib.sha256(' '.join(names).encode()).hexdigest()[:8]}"
    return record_path(results_dir, "mteb", DATASET, spec.name, tag)


def run_mteb(spec: EncoderSpec, tasks: Sequence[Any], results_dir: Path, *, device: str | None = None,
             batch_size: int = 64, allow_download: bool = False, recompute: bool = False) -> Path:
    """Run ``tasks`` for one text encoder and write its record (or keep the one that stands for the
    same entry, tasks and MTEB version); returns the record's path. A failure is recorded with its
    reason, as every record kind is."""
    import mteb

    from probe.encoders import load_encoder
    from probe.records.schema import MtebRecord, encoder_ref
    from probe.records.store import read_complete, write_record

    if spec.modality != "text":
        raise ProbeError(f"{spec.name} is a vision encoder; MTEB tasks run for text encoders")
    path = record_file(results_dir, spec, tasks)
    expected = identity(spec, tasks)
    existing = read_complete(path)
    if existing is not None and not recompute and existing.ok and existing.identity == expected:
        return path
    names = [t.metadata.name for t in tasks]
    config = {"tasks": names, "main_scores": {t.metadata.name: t.metadata.main_score for t in tasks},
              "mteb_version": mteb.__version__}
    fields: dict[str, Any] = dict(identity=expected, dataset=DATASET, seed=0, model=encoder_ref(spec), config=config)
    try:
        encoder = load_encoder(spec, device=device, allow_download=allow_download)
        if getattr(encoder, "needs_fit", False):
            raise ProbeError(f"{spec.name} is fitted on a corpus (TF-IDF); MTEB tasks bring none to fit it on")
        model: Any = _Encoder(encoder, batch_size)  # MTEB's EncoderProtocol, by its methods
        result = mteb.evaluate(model, list(tasks), cache=None, show_progress_bar=False,
                               encode_kwargs={"batch_size": batch_size})
        scores = {r.task_name: float(r.get_score()) for r in result.task_results}
        missing = [n for n in names if n not in scores]
        if missing:
            raise ProbeError(f"MTEB returned no score for {', '.join(missing)}")
        metrics = {keys.TEXT_MTEB: float(np.mean([scores[n] for n in names]))}
        metrics |= {f"{keys.TEXT_MTEB}:{n}": scores[n] for n in names}
        record = MtebRecord.new(metrics=metrics, **fields)
    except ProbeError as exc:
        record = MtebRecord.new(error=str(exc), **fields)
    except Exception as exc:  # a task's own failure is recorded, not a traceback
        record = MtebRecord.new(error=f"{type(exc).__name__}: {exc}", **fields)
    write_record(path, record)
    return path
