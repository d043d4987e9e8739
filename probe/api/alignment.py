"""``probe.run``: fit alignment heads on every (vision, text) pair and score them, from Python.

The command ``probe run`` parses its options, calls :func:`run` and prints; a notebook calls the
same function and gets a :class:`RunResult` holding the records (and a DataFrame of them). Every
input is checked before any model is resolved or loaded, and a bad one raises a
:class:`~probe.errors.ProbeError` naming it, never ``SystemExit``. Progress shows through tqdm on a
terminal (``progress=False`` hides it) and messages through ``logging`` (logger ``probe``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.api.common import check_protocol, log_skipped, names, require_both, resolve_sides
from probe.errors import ProbeError

log = logging.getLogger("probe")

#: what a head grid takes when neither the call, a preset nor a config file says (ProbeConfig's own)
DEFAULT_HEADS, DEFAULT_LOSSES, DEFAULT_LRS = ("linear",), ("siglip",), (1e-3,)
DEFAULT_SETTINGS = {"epochs": 40, "batch_size": 256, "out_dim": 512, "seed": 0}


def head_configs(preset: str | None = None, config_file: str | Path | None = None, *,
                 heads: Sequence[str] | None = None, losses: Sequence[str] | None = None,
                 lrs: Sequence[float] | None = None, **settings: int | None) -> list[Any]:
    """The grid of head configurations: a preset's values, then a config file's, then what the
    caller gave (``None``: not given, so the preset's or the file's value, else the default).
    ``settings`` are ``epochs``, ``batch_size``, ``out_dim`` and ``seed``."""
    from probe.align.config import ProbeConfig, preset_values, read_preset

    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ProbeError(f"unknown head setting {unknown[0]!r}; valid: {', '.join(DEFAULT_SETTINGS)}")
    base = preset_values(preset, to_run=True) if preset else {}
    if config_file:
        read = read_preset(str(config_file))
        if read["tune"]:
            raise ProbeError(f"{config_file}: its [tune] table sets encoder training, which probe run does not do: "
                             "use it with probe tune --config")
        base |= read["values"]
    for name, default in DEFAULT_SETTINGS.items():
        if settings.get(name) is not None or name not in base:
            base[name] = settings.get(name) if settings.get(name) is not None else default
    axes = {"head": heads, "loss": losses, "lr": lrs}
    defaults = {"head": DEFAULT_HEADS, "loss": DEFAULT_LOSSES, "lr": DEFAULT_LRS}
    grid = {name: tuple(given) if given is not None else (base[name],) if name in base else defaults[name]
            for name, given in axes.items()}
    rest = {k: v for k, v in base.items() if k not in axes}
    return [ProbeConfig(head=h, loss=lo, lr=lr, recipe=preset or "", **rest)
            for h in dict.fromkeys(grid["head"]) for lo in dict.fromkeys(grid["loss"])
            for lr in dict.fromkeys(grid["lr"])]


@dataclass
class RunPlan:
    """Everything a run would do, checked and resolved, before any work: the sweep (its pairs, head
    configurations and benchmarks), the pairs, the folders, and what ``all`` reached but cannot load."""

    sweep: Any
    items: list[tuple[Any, ...]]
    results_dir: Path
    cache_dir: Path
    options: Any
    skipped: list[Any]
    summary: str


@dataclass
class RunResult:
    """What :func:`run` wrote: record paths by outcome, and the records themselves."""

    results_dir: Path
    written: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    #: records that were there but no longer stood for the run (recomputed), with why
    stale: list[tuple[Path, str]] = field(default_factory=list)
    #: the feature cache the run read and wrote
    cache_dir: Path | None = None

    @property
    def paths(self) -> list[Path]:
        """Every record of this run: written now, failed, or already there."""
        return sorted({*self.written, *self.failed, *self.existing})

    @property
    def records(self) -> list[Any]:
        """The typed records (:mod:`probe.records.schema`) of :attr:`paths`."""
        from probe.records.store import read_record

        return [read_record(path) for path in self.paths]

    def to_frame(self) -> Any:
        """One row per record (as :func:`probe.records.load` gives them), as a pandas DataFrame."""
        import pandas as pd

        from probe.records.store import Stored
        from probe.records.table import flatten

        return pd.DataFrame([flatten(Stored(path, record)) for path, record in zip(self.paths, self.records,
                                                                                    strict=True)])


def plan_run(vision: str | Sequence[str], text: str | Sequence[str], *, dataset: str | None = None,
             train: str | None = None, evals: str | Sequence[str] = (),
             heads: Sequence[str] | None = None, losses: Sequence[str] | None = None,
             lrs: Sequence[float] | None = None, epochs: int | None = None, batch_size: int | None = None,
             out_dim: int | None = None, seed: int | None = None, preset: str | None = None,
             config_file: str | Path | None = None, recipe: str | None = None, tasks: Sequence[str] = (), save_models: bool = True,
             results_dir: str | Path | None = None, cache_dir: str | Path | None = None, workers: int | None = None,
             extract_batch_size: int | None = None, dtype: str = "auto", decode: str = "workers",
             device: str | None = None, executor: str = "local", ray_address: str | None = None,
             registry: Sequence[str | Path] = (), allow_download: bool = False, progress: bool = True,
             dry_run: bool = False, vision_layer: str | int | None = None,
             text_layer: str | int | None = None) -> RunPlan:
    """Check every input and resolve the run (see :func:`run` for the arguments); loads no model (a side
    aligned at a hidden layer loads its encoder once on the CPU to count its layers).
    ``recipe`` is the deprecated name of ``preset``."""
    from probe.align.config import check_head, check_loss
    from probe.align.sweep import AlignmentSweep
    from probe.api.layer_choice import check_layer_choice
    from probe.data import get_dataset
    from probe.data.splits import TASKS, in_domain_plan, transfer_plan
    from probe.evaluation.benchmarks import get_benchmarks
    from probe.features.options import ExtractOptions
    from probe.pipeline.ray_executor import check_executor, for_workers
    from probe.pipeline.runner import pairs
    from probe.workspace import folders

    preset = deprecated_preset_alias(preset, recipe)
    evals = names(evals)
    check_protocol(dataset, train, evals, "fit")
    for head in heads or ():
        check_head(head)
    for loss in losses or ():
        check_loss(loss)
    for task in tasks:
        if task not in TASKS:
            raise ProbeError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    check_executor(executor, ray_address)
    vision_layer = check_layer_choice(vision_layer, "--vision-layer")
    text_layer = check_layer_choice(text_layer, "--text-layer")
    # every input is checked before any model is resolved or loaded: a typo costs no work
    ds = get_dataset(train or dataset or "shapes")
    benchmarks = get_benchmarks(evals) if train else []
    configs = head_configs(preset, config_file, heads=heads, losses=losses, lrs=lrs, epochs=epochs,
                           batch_size=batch_size, out_dim=out_dim, seed=seed)
    v_specs, t_specs, skipped = resolve_sides(vision, text, registry, allow_download)
    require_both(v_specs, t_specs, "run")
    check_token_heads(configs, [*v_specs, *t_specs])
    say_preset_changes(configs)
    say_differences(preset)
    results, cache = for_workers(executor, *folders(results_dir, cache_dir, dry_run))
    chosen = set(tasks or TASKS)
    if train:
        plan = transfer_plan(ds, benchmarks, chosen, explicit_tasks=bool(tasks), seed=configs[0].seed)
        where = f"fitted on {ds.info.name}, scored on {', '.join(b.info.name for b in benchmarks)}"
    else:
        plan = in_domain_plan(ds, chosen, explicit_tasks=bool(tasks))
        where = f"on {ds.info.name}"
    options = ExtractOptions(cache_dir=cache, workers=workers, batch_size=extract_batch_size, dtype=dtype,
                             device=device, allow_download=allow_download, decode=decode, progress=progress)
    sweep = AlignmentSweep(ds.info.name, plan, configs, chosen, results, options, save_models=save_models)
    if sweep.token_heads and not dry_run:
        check_token_space(sweep, [*v_specs, *t_specs], cache)
    n = len(v_specs) * len(t_specs) * len(configs) * len(plan.targets)
    summary = (f"{len(v_specs)} vision x {len(t_specs)} text models x {len(configs)} head config(s)"
               + (f" x {len(plan.targets)} benchmarks" if train else "") + f" = {n} result(s) {where}")
    items = pairs(v_specs, t_specs)
    if vision_layer or text_layer:
        from probe.api.layer_choice import layered_pairs

        if sweep.token_heads:
            raise ProbeError("token heads read each encoder's output tokens; --vision-layer / --text-layer choose "
                             "pooled hidden layers: use one or the other")
        items = layered_pairs(items, vision_layer, text_layer, ds.info.name, results, allow_download)
    return RunPlan(sweep, items, results, cache, options, skipped, summary)


def run(vision: str | Sequence[str], text: str | Sequence[str], *, skip_existing: bool = False,
        executor: str = "local", ray_address: str | None = None, progress: bool = True,
        echo: Callable[[str], None] | None = None, **settings: Any) -> RunResult:
    """Fit alignment heads on every (vision, text) pair and score them; one record per result.

    ``vision`` and ``text`` are registry names or shell patterns (``"all"``: every available
    non-test entry). In-domain, heads are fitted on ``dataset``'s (default ``shapes``) train split, stopped early on its
    val split and scored on its test split; zero-shot transfer (``train`` with ``evals``), they are
    fitted on the corpus and scored on each benchmark. ``heads``, ``losses`` and ``lrs`` make a grid
    fitted in one pass; ``preset`` (a published training setup, e.g. ``"sail"``) and ``config_file`` give head settings that
    explicit arguments override. ``vision_layer`` / ``text_layer`` align a side at a hidden layer: a
    block number, ``"last"`` or ``"best"`` (the layer pair a recorded ``select(layers=...)`` search of
    the pair on the corpus found most similar); such a side is an encoder variant ``<name>@<layer>``
    with records of its own. ``skip_existing`` keeps records that still stand for the run (same
    identity) and recomputes the rest. ``echo`` receives one line per finished result.

    Other keyword arguments are :func:`plan_run`'s: ``dataset``, ``train``, ``evals``, ``epochs``,
    ``batch_size``, ``out_dim``, ``seed``, ``tasks``, ``save_models``, ``results_dir``,
    ``cache_dir``, ``workers``, ``extract_batch_size``, ``dtype``, ``decode``, ``device``,
    ``registry`` (extra registry files), ``allow_download``.

    Example::

        import probe
        result = probe.run("test/tiny-vit", "test/tiny-bert", epochs=2, results_dir="results")
        result.to_frame()[["vision", "text", "alignment/probing_score"]]
    """
    from probe.pipeline.ray_executor import executor_for
    from probe.pipeline.runner import PairRunner

    planned = plan_run(vision, text, executor=executor, ray_address=ray_address, progress=progress, **settings)
    _log_plan(planned)
    with executor_for(executor, ray_address, (planned.cache_dir, planned.results_dir)) as runner_executor:
        outcome = PairRunner(skip_existing=skip_existing, echo=echo, progress=progress,
                             executor=runner_executor).run(planned.sweep, planned.items)
    if outcome.stale and echo is None:
        log.info("%s", outcome.stale_summary())
    return RunResult(planned.results_dir, outcome.written, outcome.failed, outcome.existing, outcome.stale,
                     planned.cache_dir)


def check_token_heads(configs: Sequence[Any], specs: Sequence[Any]) -> None:
    """Heads that read every token (freeze-align's) are fed token rows and pooled heads pooled features,
    so one run takes one kind; and every encoder of a token-head run must give tokens (one line, before
    any model loads)."""
    from probe.align.config import TOKEN_HEADS
    from probe.align.token_heads import TEXT_TOKENS
    from probe.encoders.tokens import token_spec

    kinds = {config.head in TOKEN_HEADS for config in configs}
    if len(kinds) > 1:
        raise ProbeError(f"heads {', '.join(sorted({c.head for c in configs}))} mix token heads ({', '.join(TOKEN_HEADS)}) "
                         "with pooled ones: run them apart")
    if kinds == {True}:
        for spec in specs:
            token_spec(spec, TEXT_TOKENS)


def check_token_space(sweep: Any, specs: Sequence[Any], cache: Path) -> None:
    """Token entries are hundreds of times their pooled rows (docs/explanation/token-features.md): a run whose token
    entries would not fit the cache's disk is refused before any encoding, with both sizes."""
    import shutil

    from probe.io import human_bytes
    from probe.pipeline.preview import plan_previews

    need = sum(p.bytes_to_write for p in plan_previews([sweep.feature_spec(s) for s in specs], sweep.plan,
                                                        sweep.options))
    free = shutil.disk_usage(cache).free
    if need > free:
        raise ProbeError(f"the token entries this run would cache need {human_bytes(need)} and {cache} has "
                         f"{human_bytes(free)} free: free space, point --cache-dir at a larger disk, or train on a "
                         "smaller corpus")


def say_differences(preset: str | None) -> None:
    """One line saying what probe does otherwise than a preset's source (its ``differences``), if anything."""
    if not preset:
        return
    from probe.align.config import read_preset
    from probe.align.presets import preset_path

    differences = read_preset(str(preset_path(preset)))["differences"]
    if differences:
        log.warning("preset %s differs from its source: %s", preset, differences)


def say_preset_changes(configs: Sequence[Any], tune_configs: Sequence[Any] = ()) -> None:
    """One line per preset a configuration changes: the settings given win over the preset's, and the
    records hold both values (``preset_changes``), so a run under a paper's name that is not its
    setup is never silent about it. ``tune_configs``: a tune grid's encoder settings, compared with the
    preset's [tune] table too."""
    changes: dict[str, dict[str, list[Any]]] = {}
    for config in configs:
        found = dict(config.preset_changes)
        for tune in tune_configs:
            found |= tune.preset_changes(config.recipe)
        for name, (was, now) in found.items():
            changes.setdefault(config.recipe, {}).setdefault(name, [was, []])[1].append(now)
    for preset, changed in changes.items():
        log.warning("preset %s changed as given: %s; the records hold both values (preset_changes)", preset,
                    ", ".join(f"{name} {'/'.join(map(str, dict.fromkeys(now)))} (the preset's {was})"
                              for name, (was, now) in changed.items()))


def _log_plan(planned: RunPlan) -> None:
    """The entries skipped, then the run's size, one line each."""
    log_skipped(planned.skipped)
    log.info("%s", planned.summary)


def deprecated_preset_alias(preset: str | None, recipe: str | None) -> str | None:
    """``recipe=`` was the name of ``preset=`` before dataset recipes and training presets were told
    apart; it still works, with a DeprecationWarning, until 0.5."""
    if recipe is None:
        return preset
    import warnings

    warnings.warn("recipe= is deprecated; use preset= (same names)", DeprecationWarning, stacklevel=3)
    if preset is not None and preset != recipe:
        raise ProbeError(f"preset {preset!r} and recipe {recipe!r} disagree; recipe (--recipe, recipe=) is the old "
                         "name of preset (--preset, preset=): give only the preset")
    return recipe
