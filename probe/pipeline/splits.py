"""Which split of a dataset plays which role in a run, loaded and checked before any work starts.

``fit``: heads are fitted here, and encoders fitted on a corpus (TF-IDF) are fitted on its captions;
``val``: early stopping; ``eval``: the held-out split that is scored; ``compositional``: swap pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from probe.data.base import SplitData
from probe.errors import ProbeError

TASKS = ("retrieval", "zeroshot", "compositional")
COMPOSITIONAL_SPLIT = "winoground"
ROLES = ("fit", "val", "eval", "compositional")


@dataclass(frozen=True)
class SplitPlan:
    """The splits of one run by role, and the label tasks zero-shot classification scores."""

    fit: SplitData
    val: SplitData | None = None
    eval: SplitData | None = None
    compositional: SplitData | None = None
    label_tasks: tuple[str, ...] = ()

    def names(self) -> dict[str, str | None]:
        return {role: (data.split if data is not None else None) for role, data in self.by_role(ROLES).items()}

    def by_role(self, roles: tuple[str, ...] = ROLES) -> dict[str, SplitData | None]:
        return {role: getattr(self, role) for role in roles if role in {f.name for f in fields(self)}}

    @property
    def held_out(self) -> SplitData:
        if self.eval is None:
            raise ProbeError("this run has no split to score")
        return self.eval


def labelled_tasks(data: SplitData) -> list[str]:
    """Label tasks with at least one labelled image in ``data``."""
    return [task for task, labels in data.labels.items() if (np.asarray(labels) >= 0).any()]


def load_split(dataset: Any, split: str) -> SplitData:
    """One split by name; a name the dataset lacks is a one-line error listing the valid ones."""
    splits = dataset.info.splits
    if split not in splits:
        raise ProbeError(f"dataset {dataset.info.name!r} has no split {split!r}; valid: {', '.join(splits)}")
    return dataset.load(split)


def in_domain_plan(dataset: Any, tasks: set[str], explicit_tasks: bool) -> SplitPlan:
    """In-domain probing: fit on ``train``, stop early on ``val``, score ``test`` (or ``val``)."""
    splits = dataset.info.splits
    name = dataset.info.name
    if "train" not in splits:
        raise ProbeError(f"dataset {name!r} has no 'train' split to fit heads on (splits: {', '.join(splits)})")
    eval_name = "test" if "test" in splits else "val" if "val" in splits else None
    if eval_name is None:
        raise ProbeError(f"dataset {name!r} has no 'test' or 'val' split to score on (splits: {', '.join(splits)})")
    fit = dataset.load("train")
    val = dataset.load("val") if "val" in splits and eval_name != "val" else None
    held_out = dataset.load(eval_name)
    label_tasks = labelled_tasks(held_out)
    if "zeroshot" in tasks and not label_tasks and explicit_tasks:
        raise ProbeError(f"dataset {name!r} has no class labels on {eval_name!r}, so zero-shot "
                         f"classification cannot run; drop --task zeroshot (valid here: retrieval)")
    compositional = None
    if "compositional" in tasks:
        if COMPOSITIONAL_SPLIT in splits:
            compositional = dataset.load(COMPOSITIONAL_SPLIT)
        elif explicit_tasks:
            raise ProbeError(f"dataset {name!r} has no {COMPOSITIONAL_SPLIT!r} split of swap pairs for "
                             f"--task compositional (splits: {', '.join(splits)})")
    return SplitPlan(fit, val, held_out, compositional, tuple(label_tasks) if "zeroshot" in tasks else ())


def single_split_plan(dataset: Any, split: str) -> SplitPlan:
    """One split scored on its own (selection compares encoders on it); ``train`` stays the corpus
    that corpus-fitted encoders learn from."""
    data = load_split(dataset, split)
    fit = data if split == "train" or "train" not in dataset.info.splits else dataset.load("train")
    return SplitPlan(fit=fit, eval=data)
