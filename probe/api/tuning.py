"""``probe.tune``: align a pair with chosen parts of each encoder trained end to end (To Freeze or Not
to Freeze), through the same pair runner as head fits (so on Ray too)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.api.alignment import RunResult, say_differences, say_preset_changes
from probe.api.common import check_protocol, log_skipped, names, require_both, resolve_sides
from probe.errors import ProbeError

log = logging.getLogger("probe")


@dataclass
class TunePlan:
    """A tune grid checked and resolved, before any work: the work, its pairs, folders and options."""

    work: Any
    items: list[tuple[Any, ...]]
    results_dir: Path
    cache_dir: Path
    options: Any
    skipped: list[Any]
    summary: str

    @property
    def jobs(self) -> list[Any]:
        return [job for item in self.items for job in self.work.jobs(item)]


def plan_tune(vision: str | Sequence[str], text: str | Sequence[str], *, dataset: str | None = None,
              train: str | None = None, evals: str | Sequence[str] = (), freeze: str | None = None,
              vision_parts: str | None = None, text_parts: str | None = None, grid: str | None = None,
              freeze_cls: bool = False, seeds: Sequence[int] = (0,), pooling: str | None = None,
              head: str | None = None, loss: str | None = None, norm: bool | None = None, lr: float | None = None,
              encoder_lr: float | None = None, epochs: int | None = None, batch_size: int | None = None,
              out_dim: int | None = None, samples_seen: int | None = None, checkpoint_every: int | None = None,
              precision: str | None = None, grad_checkpointing: bool | None = None, preset: str | None = None,
              config_file: str | Path | None = None, save_models: bool = True,
              results_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              workers: int | None = None, device: str | None = None, executor: str = "local",
              ray_address: str | None = None, registry: Sequence[str | Path] = (), allow_download: bool = False,
              progress: bool = True, dry_run: bool = False, check_parts: bool = True) -> TunePlan:
    """Check every input and resolve the grid (see :func:`tune`); with ``check_parts`` each encoder
    whose named parts must exist is loaded once on the CPU to check them (a dry run does not). A
    setting left at None takes the preset's, then the config file's value, else probe tune's default."""
    from probe.align.config import ProbeConfig, check_head, check_loss
    from probe.data import get_dataset
    from probe.data.splits import TASKS, in_domain_plan, transfer_plan
    from probe.evaluation.benchmarks import get_benchmarks
    from probe.features.options import ExtractOptions
    from probe.pipeline.ray_executor import check_executor, for_workers
    from probe.pipeline.runner import pairs
    from probe.unfreezing.config import GRIDS, TuneConfig, from_notation, tune_settings, with_cls_frozen
    from probe.unfreezing.pair import TuneRun
    from probe.unfreezing.work import TuneWork
    from probe.workspace import folders

    evals = names(evals)
    check_protocol(dataset, train, evals, "train")
    given = [name for name, value in (("--freeze", freeze), ("--grid", grid),
                                      ("--vision-parts/--text-parts", vision_parts or text_parts)) if value]
    if len(given) > 1:
        raise ProbeError(f"give one of --freeze, --grid or --vision-parts/--text-parts, not {' and '.join(given)}")
    if grid is not None and grid not in GRIDS:
        raise ProbeError(f"grid {grid!r} is not one of {', '.join(GRIDS)}")
    resolved = tune_settings(preset, None if config_file is None else str(config_file),
                             dict(head=head, loss=loss, norm=norm, lr=lr, epochs=epochs, batch_size=batch_size,
                                  out_dim=out_dim),
                             dict(encoder_lr=encoder_lr, pooling=pooling, precision=precision, samples_seen=samples_seen,
                                  checkpoint_every=checkpoint_every, grad_checkpointing=grad_checkpointing))
    check_head(resolved.head["head"])
    from probe.align.config import TOKEN_HEADS

    if resolved.head["head"] in TOKEN_HEADS:
        raise ProbeError(f"head {resolved.head['head']!r} reads every token of frozen encoders; probe tune trains pooled "
                         "heads with encoder parts: run it with probe run")
    check_loss(resolved.head["loss"])
    check_executor(executor, ray_address)
    if grid:
        settings = [from_notation(s) for s in GRIDS[grid]]
    elif vision_parts or text_parts:
        settings = [(vision_parts or "none", text_parts or "none")]
    else:
        settings = [from_notation(freeze or GRIDS["to-freeze"][0])]  # the paper's best setting by default
    if freeze_cls:
        settings = [(with_cls_frozen(v, "vision"), with_cls_frozen(t, "text")) for v, t in settings]
    tune_configs = [TuneConfig(vision_parts=v, text_parts=t, **resolved.tune) for v, t in settings]
    head_configs = [ProbeConfig(**resolved.head, recipe=preset or "", seed=seed) for seed in dict.fromkeys(seeds)]
    v_specs, t_specs, skipped = resolve_sides(vision, text, registry, allow_download)
    require_both(v_specs, t_specs, "tune")
    results, cache = for_workers(executor, *folders(results_dir, cache_dir, dry_run))
    options = ExtractOptions(cache_dir=cache, workers=workers, device=device, allow_download=allow_download,
                             progress=progress)
    untrainable = _untrainable(v_specs + t_specs, (*names(vision), *names(text)), tune_configs)
    if check_parts and not dry_run:
        _check_parts(v_specs, t_specs, tune_configs, options, untrainable)
    ds = get_dataset(train or dataset or "shapes")
    chosen = set(TASKS)
    if train:
        plan = transfer_plan(ds, get_benchmarks(evals), chosen, explicit_tasks=False,
                             seed=head_configs[0].seed)
    else:
        plan = in_domain_plan(ds, chosen, explicit_tasks=False)
    runner = TuneRun(ds.info.name, plan, chosen, results, options, save_models=save_models, workers=workers)
    work = TuneWork(runner, tune_configs, head_configs, untrainable)
    items = pairs(v_specs, t_specs)
    every = len(items) * len(tune_configs) * len(head_configs)
    feasible = sum(len(work.jobs(item)) for item in items)
    if feasible < every:
        log.info("skipping %d tune run(s) that would train an entry that cannot train: %s (e.g. %s)",
                 every - feasible, ", ".join(sorted(untrainable)), next(iter(untrainable.values())))
    if not feasible:
        raise ProbeError("no tune run is left: every one would train an entry that cannot train")
    say_preset_changes(head_configs, tune_configs)
    say_differences(preset)
    summary = f"{feasible} tune run(s) x {len(plan.targets)} benchmark(s) on {ds.info.name}"
    return TunePlan(work, items, results, cache, options, skipped, summary)


def tune(vision: str | Sequence[str], text: str | Sequence[str], *, skip_existing: bool = False,
         executor: str = "local", ray_address: str | None = None, progress: bool = True,
         echo: Callable[[str], None] | None = None, **settings: Any) -> RunResult:
    """Train the chosen parts of each pair's encoders with the heads, and score every benchmark.

    The setting is one of: ``freeze`` (the paper's notation, ``"V_u^f,T_u^u"``: input embeddings and
    blocks of each side unfrozen or frozen; the default is the paper's best), ``grid`` (``"to-freeze"``,
    the paper's Table 2, or ``"to-freeze-16"``), or ``vision_parts`` / ``text_parts``
    (``"cls_token,blocks:2"``; ``"all,-cls"``: every part but the one named after ``-``).
    ``freeze_cls`` holds both CLS tokens frozen in each setting (the abstract's ablation: 37.5% to
    19.4% mean over DataComp's 38 tasks). One run per (pair, setting, seed); one record per benchmark under
    ``records/tune/``; each tuned pair saved like any aligned model. Runs checkpoint as they go, and
    calling again resumes a killed run; ``skip_existing`` keeps records that are there.

    ``preset`` is a published training regime with encoder settings (``"to-freeze"``: the paper's,
    DataComp small's schedule through open_clip's optimiser, 12.8M samples seen); ``config_file`` a
    TOML file of the same form ([values] for the heads, [tune] for the encoders); settings given here
    win over both, and the records hold what ran. ``samples_seen`` trains for that many pairs instead
    of ``epochs`` (DataComp's budget).

    Other keyword arguments are :func:`plan_tune`'s (``dataset``, ``train``, ``evals``, ``seeds``,
    ``pooling``, ``head``, ``loss``, ``norm``, ``lr``, ``encoder_lr``, ``epochs``, ``batch_size``,
    ``out_dim``, ``samples_seen``, ``checkpoint_every``, ``precision``, ``grad_checkpointing``,
    ``preset``, ``config_file``, ``save_models``, ``results_dir``, ``cache_dir``, ``workers``,
    ``device``, ``registry``, ``allow_download``).

    Example::

        import probe
        result = probe.tune("test/tiny-vit", "test/tiny-bert", freeze="V_u^f,T_u^u", epochs=1)
        result.to_frame()[["vision", "text", "alignment/probing_score"]]
    """
    from probe.pipeline.ray_executor import executor_for
    from probe.pipeline.runner import PairRunner

    planned = plan_tune(vision, text, executor=executor, ray_address=ray_address, progress=progress, **settings)
    log_skipped(planned.skipped)
    log.info("%s", planned.summary)
    with executor_for(executor, ray_address, (planned.cache_dir, planned.results_dir)) as runner_executor:
        outcome = PairRunner(skip_existing=skip_existing, echo=echo, progress=progress,
                             executor=runner_executor).run(planned.work, planned.items)
    return RunResult(planned.results_dir, outcome.written, outcome.failed, outcome.existing, outcome.stale,
                     planned.cache_dir)


def _untrainable(specs: Sequence[Any], patterns: Sequence[str], tune_configs: Sequence[Any]) -> dict[str, str]:
    """Entries that cannot train what a setting asks of them, with the reason. An entry named exactly
    is an error (said before any work); one that a pattern (``all``, ``efficientnet/*``) reached has
    its runs that would train it skipped, and counted."""
    from probe.unfreezing.modules import not_trainable

    exact = {p for p in patterns if p != "all" and not any(c in p for c in "*?[")}
    out = {}
    for spec in specs:
        refusal = not_trainable(spec)
        trains = any(not tcfg.selections()[spec.modality == "text"].frozen for tcfg in tune_configs)
        if refusal and trains:
            if spec.name in exact:
                raise ProbeError(refusal)
            out[spec.name] = refusal
    return out


def _check_parts(v_specs: Sequence[Any], t_specs: Sequence[Any], tune_configs: Sequence[Any], options: Any,
                 untrainable: dict[str, str]) -> None:
    """Every part asked for exists in its encoder, checked before any work (each encoder loaded once,
    on the CPU, and let go): a CNN asked for its cls_token is a one-line error, not a failed run."""
    from probe.encoders import load_encoder
    from probe.unfreezing.modules import module_parts, tunable
    from probe.unfreezing.parts import resolve

    wanted: dict[str, tuple[Any, list[Any]]] = {}
    for tcfg in tune_configs:
        for specs, selection in zip((v_specs, t_specs), tcfg.selections(), strict=True):
            for spec in specs:
                if not selection.frozen and spec.name not in untrainable:
                    wanted.setdefault(spec.name, (spec, []))[1].append(selection)
    for spec, selections in wanted.values():
        if all(name.startswith("stage:") or name == "all" for s in selections for name in s.parts):
            continue  # stages and "all" name whatever parts the encoder has
        module = tunable(load_encoder(spec, device="cpu", allow_download=options.allow_download), "cls")
        parts, _ = module_parts(module)
        for selection in selections:
            resolve(selection, parts, spec.name, spec.modality)
        del module
