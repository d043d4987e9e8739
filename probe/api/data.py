"""``probe.get_data``: build dataset recipes and prepare published benchmarks, from Python.

The command ``probe data get NAME...`` parses its options, calls this and prints one line per name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from probe.api.common import names as as_names
from probe.errors import ProbeError


@dataclass(frozen=True)
class Obtained:
    """One name's outcome: a recipe built (or found built and unchanged), or a benchmark prepared."""

    name: str
    folder: Path
    #: "built", "already built" (its files match its manifest) or "prepared" (a published benchmark)
    outcome: str
    #: images per split (a recipe), or what a preparation counted
    counts: dict[str, int] = field(default_factory=dict)
    #: source items a recipe left out, by reason
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float | None = None

    def summary(self) -> str:
        """The line ``probe data get`` prints."""
        if self.outcome == "prepared":
            return f"{self.name}: ready in {self.folder}: " + ", ".join(f"{n} {what}" for what, n in self.counts.items())
        if self.outcome == "already built":
            return f"{self.name}: already built in {self.folder} (files match its manifest; --force rebuilds)"
        counts = ", ".join(f"{s} {n}" for s, n in self.counts.items())
        dropped = "; ".join(f"{n} {reason}" for reason, n in self.dropped.items()) or "none"
        return f"{self.name}: built in {self.folder} in {self.seconds or 0:.1f} s: {counts} images; dropped: {dropped}"


def get_data(names: str | Sequence[str], *, source: str | Path | None = None, force: bool = False,
             allow_download: bool = False, progress: bool = True,
             on_done: Callable[[Obtained], None] | None = None) -> list[Obtained]:
    """Build each dataset recipe in ``names`` into ``$PROBE_HOME/datasets/NAME`` (unless a build whose
    files match its manifest is there, or ``force``), or put a published benchmark's files (imagenet1k,
    coco-karpathy, winoground, clip_benchmark sets ...) into the layout its reader takes. Every name is
    checked before any work; ``source`` names one recipe's source; ``on_done`` gets each outcome as it
    is done.

    Example::

        import probe
        for done in probe.get_data(["tuxpaint", "fashion-mnist"]):
            print(done.summary())
    """
    from probe.evaluation.preparation import PUBLISHED, prepare, published
    from probe.recipes import get, get_recipe

    wanted = as_names(names)
    if not wanted:
        raise ProbeError("name at least one dataset recipe or published benchmark to get")
    for name in wanted:
        if published(name) is None:
            get_recipe(name, also=PUBLISHED)  # every name checked before any work
    if source and len(wanted) > 1:
        raise ProbeError(f"--source names one recipe's source; got {len(wanted)} recipes")
    out = []
    for name in wanted:
        if published(name) is not None:
            where, prepared = prepare(name, source, allow_download=allow_download, progress=progress)
            done = Obtained(name, Path(where), "prepared", dict(prepared))
        else:
            report = get(name, source=source, force=force, progress=progress)
            done = Obtained(name, report.folder, "built" if report.built else "already built", dict(report.counts),
                            dict(report.dropped), report.seconds if report.built else None)
        out.append(done)
        if on_done is not None:
            on_done(done)
    return out
