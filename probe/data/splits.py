"""Which split of which dataset plays which role in a run, loaded and checked before any work starts.

``fit``: heads are fitted here, and encoders fitted on a corpus (TF-IDF) learn from its captions;
``val``: early stopping; each :class:`Target` is one benchmark the fitted heads are scored on (its
held-out split, swap pairs and label tasks). The in-domain protocol has one target, the dataset's
own test split; zero-shot transfer fits on a training corpus and scores benchmarks it never saw.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.data.base import SplitData
from probe.errors import ProbeError

TASKS = ("retrieval", "zeroshot", "compositional")
COMPOSITIONAL_SPLIT = "winoground"
IN_DOMAIN, TRANSFER = "in-domain", "zero-shot transfer"
#: Share of a corpus without a val split set aside (seeded) for early stopping, and its bounds.
EARLY_STOPPING_FRACTION, EARLY_STOPPING_MIN, EARLY_STOPPING_MAX = 0.05, 10, 5000


#: roles every target's records share: the split heads are fitted on and the early-stopping split
SHARED_ROLES = ("fit", "val")


@dataclass(frozen=True)
class Role:
    """A split's part in a run, as features and records name it: ``fit``, ``val`` (early stopping), or
    a target's ``eval`` (scored), ``compositional`` (swap pairs) or ``prompts-<task>`` (class prompts),
    with ``key`` the target's benchmark (``""`` for the in-domain target). Written ``base:key``."""

    base: str
    key: str = ""

    def __str__(self) -> str:
        return f"{self.base}:{self.key}" if self.key else self.base

    @classmethod
    def parse(cls, name: str) -> Role:
        base, _, key = name.partition(":")
        return cls(base, key)

    def serves(self, key: str) -> bool:
        """Whether a record of the target ``key`` uses features of this role."""
        return self.base in SHARED_ROLES or self.key == key


@dataclass(frozen=True)
class Target:
    """One benchmark the heads are scored on.

    ``key`` names its roles: ``""`` for the in-domain target (roles ``eval``, ``compositional``,
    ``prompts-<task>``), the benchmark's name otherwise (``eval:<name>`` ...), so features of
    several benchmarks sit side by side.
    """

    benchmark: str
    eval: SplitData
    compositional: SplitData | None = None
    label_tasks: tuple[str, ...] = ()
    key: str = ""
    #: whether retrieval is scored (a classification benchmark has no captions to retrieve)
    retrieval: bool = True

    def role(self, base: str) -> str:
        """The name of this target's ``base`` role (see :class:`Role`)."""
        return str(Role(base, self.key))

    def reference(self) -> dict[str, Any]:
        """What a record says it scored (see :class:`probe.records.schema.BenchmarkRef`)."""
        fingerprint = self.eval.content_fingerprint
        if self.compositional is not None and self.compositional is not self.eval:
            fingerprint += f"+{self.compositional.content_fingerprint}"
        return {"name": self.benchmark, "split": self.eval.split,
                "compositional_split": self.compositional.split if self.compositional is not None else None,
                "description": self.eval.protocol, "fingerprint": fingerprint}

    def prompt_texts(self, task: str) -> list[str]:
        """The zero-shot prompts of a label task, class-major, exactly as they are encoded."""
        from probe.metrics.zeroshot import DEFAULT_TEMPLATES, prompts

        return prompts(self.eval.classes[task], self.eval.templates.get(task) or DEFAULT_TEMPLATES)

    def prompts_fingerprint(self) -> str | None:
        """A digest of every label task's prompts as encoded (class names and templates), or None
        without label tasks. Zero-shot scores depend on them as much as on the images, so a record's
        identity holds it: a changed templates file recomputes those records."""
        return self._prompts_digest

    @functools.cached_property
    def _prompts_digest(self) -> str | None:
        """Computed once per target: a run asks for every unit of every pair (80,000 ImageNet prompts)."""
        if not self.label_tasks:
            return None
        import hashlib

        digest = hashlib.sha256()
        for task in sorted(self.label_tasks):
            digest.update(task.encode() + b"\0" + "\0".join(self.prompt_texts(task)).encode() + b"\1")
        return digest.hexdigest()[:20]

    def protocol(self, corpus: str) -> str:
        """Scoring the training corpus's own held-out split (or that of one of the datasets a ``+``
        corpus joins) is in-domain, however it was asked for."""
        return IN_DOMAIN if self.benchmark == corpus or self.benchmark in corpus.split("+") else TRANSFER


@dataclass(frozen=True)
class SplitPlan:
    """The splits of one run by role."""

    fit: SplitData
    val: SplitData | None = None
    targets: tuple[Target, ...] = ()
    #: how the early-stopping split was chosen, in words (goes into every record)
    held_out_rule: str | None = None

    @property
    def protocol(self) -> str:
        """Zero-shot transfer when any benchmark is not the training corpus itself, else in-domain."""
        corpus = self.fit.dataset
        return TRANSFER if any(t.protocol(corpus) == TRANSFER for t in self.targets) else IN_DOMAIN

    def corpus_ref(self, name: str) -> dict[str, Any]:
        """What heads were fitted on, as records and saved models state it (see
        :class:`probe.records.schema.CorpusRef`). The fingerprint hashes every training image and
        caption: callers keep the result rather than asking again per record."""
        from probe.data.base import text_fingerprint

        fit = self.fit
        return {"name": name, "split": fit.split,
                "fingerprint": f"{fit.image_fingerprint()}:{text_fingerprint(fit.captions)}",
                "n_images": fit.n_images, "n_captions": len(fit.captions), "held_out": self.held_out_rule,
                "description": fit.protocol}

    @property
    def target(self) -> Target:
        """The only target of a single-benchmark plan."""
        if len(self.targets) != 1:
            raise ProbeError(f"this run scores {len(self.targets)} benchmarks, not one")
        return self.targets[0]

    @property
    def scored(self) -> SplitData:
        """The split the only target is scored on (not the early-stopping split, which is ``val``)."""
        return self.target.eval

    @property
    def label_tasks(self) -> tuple[str, ...]:
        return self.target.label_tasks

    def roles(self) -> dict[str, SplitData]:
        """Every split by role name, targets' roles included."""
        out = {"fit": self.fit} | ({"val": self.val} if self.val is not None else {})
        for target in self.targets:
            out[target.role("eval")] = target.eval
            if target.compositional is not None:
                out[target.role("compositional")] = target.compositional
        return out

    def names(self, target: Target | None = None) -> dict[str, str | None]:
        """Split names by role, as one record sees them (the fit and val splits and one target's)."""
        target = target or self.target
        return {"fit": self.fit.split, "val": self.val.split if self.val is not None else None,
                "eval": target.eval.split,
                "compositional": target.compositional.split if target.compositional is not None else None}


def labelled_tasks(data: SplitData) -> list[str]:
    """Label tasks with at least one labelled image in ``data``."""
    return [task for task, labels in data.labels.items() if (np.asarray(labels) >= 0).any()]


def load_split(dataset: Any, split: str) -> SplitData:
    """One split by name; a name the dataset lacks is a one-line error listing the valid ones."""
    splits = dataset.info.splits
    if split not in splits:
        raise ProbeError(f"dataset {dataset.info.name!r} has no split {split!r}; valid: {', '.join(splits)}")
    return dataset.load(split)


def scored_split(dataset: Any) -> str:
    """The split a dataset is scored on: ``test``, else ``val`` (a benchmark with one split: that one)."""
    splits = dataset.info.splits
    if len(splits) == 1 and getattr(dataset, "tasks", None) is not None:
        return splits[0]
    for name in ("test", "val"):
        if name in splits:
            return name
    raise ProbeError(f"dataset {dataset.info.name!r} has no 'test' or 'val' split to score on "
                     f"(splits: {', '.join(splits)})")


def make_target(dataset: Any, tasks: set[str], explicit_tasks: bool, key: str = "") -> Target:
    """A dataset as a benchmark: its scored split, label tasks and swap pairs, as ``tasks`` ask
    (and as the benchmark offers: a catalogue benchmark declares its own tasks)."""
    name, splits = dataset.info.name, dataset.info.splits
    offered = getattr(dataset, "tasks", None)
    if offered is not None:
        tasks, explicit_tasks = tasks & set(offered), False
    eval_name = scored_split(dataset)
    scored = dataset.load(eval_name)
    label_tasks = labelled_tasks(scored)
    if "zeroshot" in tasks and not label_tasks and explicit_tasks:
        raise ProbeError(f"dataset {name!r} has no class labels on {eval_name!r}, so zero-shot "
                         f"classification cannot run; drop --task zeroshot (valid here: retrieval)")
    compositional = None
    if "compositional" in tasks:
        if scored.swap_pairs is not None:  # a compositional benchmark scores its own swap pairs
            compositional = scored
        elif COMPOSITIONAL_SPLIT in splits:
            compositional = dataset.load(COMPOSITIONAL_SPLIT)
        elif explicit_tasks:
            raise ProbeError(f"dataset {name!r} has no {COMPOSITIONAL_SPLIT!r} split of swap pairs for "
                             f"--task compositional (splits: {', '.join(splits)})")
    retrieval = "retrieval" in tasks and bool(scored.captions) and compositional is not scored
    return Target(name, scored, compositional, tuple(label_tasks) if "zeroshot" in tasks else (), key, retrieval)


def _train_split(dataset: Any) -> SplitData:
    splits = dataset.info.splits
    if "train" not in splits:
        raise ProbeError(f"dataset {dataset.info.name!r} has no 'train' split to fit heads on "
                         f"(splits: {', '.join(splits)})")
    return dataset.load("train")


def in_domain_plan(dataset: Any, tasks: set[str], explicit_tasks: bool) -> SplitPlan:
    """In-domain probing: fit on ``train``, stop early on ``val``, score ``test`` (or ``val``)."""
    fit = _train_split(dataset)
    target = make_target(dataset, tasks, explicit_tasks)
    val = dataset.load("val") if "val" in dataset.info.splits and target.eval.split != "val" else None
    rule = f"its {val.split!r} split ({val.n_images} images)" if val is not None else None
    return SplitPlan(fit, val, (target,), rule)


def transfer_plan(corpus: Any, benchmarks: list[Any], tasks: set[str], explicit_tasks: bool,
                  seed: int = 0) -> SplitPlan:
    """Zero-shot transfer: fit on the corpus's ``train`` split, stop early on its ``val`` split or
    a seeded carve-out of a few percent of it, score every benchmark."""
    if not benchmarks:
        raise ProbeError("--train needs at least one --eval BENCHMARK to score")
    train = _train_split(corpus)
    if "val" in corpus.info.splits:
        fit, val = train, corpus.load("val")
        rule = f"its {val.split!r} split ({val.n_images} images)"
    else:
        fit, val = carve_out(train, seed)
        rule = (f"a seeded carve-out of {val.n_images} of the {train.n_images} {train.split!r} images "
                f"({EARLY_STOPPING_FRACTION:.0%}, seed {seed}); heads fit on the other {fit.n_images}")
    targets = tuple(make_target(b, tasks, explicit_tasks, key=b.info.name) for b in benchmarks)
    return SplitPlan(fit, val, targets, rule)


def carve_out(data: SplitData, seed: int = 0) -> tuple[SplitData, SplitData]:
    """``(fit, early_stopping)``: a seeded few percent of the images (with all their captions) set
    aside for early stopping (the split keeps its name ``<split>-heldout``, which cache keys and
    records hold)."""
    n = data.n_images
    n_held = int(min(EARLY_STOPPING_MAX, max(EARLY_STOPPING_MIN, round(EARLY_STOPPING_FRACTION * n))))
    if n_held * 2 > n:
        raise ProbeError(f"{data.dataset}/{data.split} has {n} images: too few to hold {n_held} out for early "
                         "stopping; give the corpus a 'val' split")
    held = np.sort(np.random.default_rng([seed, n]).choice(n, n_held, replace=False))
    keep = np.setdiff1d(np.arange(n), held)
    return data.subset(keep, f"{data.split}-fit"), data.subset(held, f"{data.split}-heldout")


def single_split_plan(dataset: Any, split: str) -> SplitPlan:
    """One split scored on its own (selection compares encoders on it); ``train`` stays the corpus
    that corpus-fitted encoders learn from."""
    data = load_split(dataset, split)
    fit = data if split == "train" or "train" not in dataset.info.splits else dataset.load("train")
    return SplitPlan(fit=fit, targets=(Target(dataset.info.name, data),))
