"""``probe.extract``: features of encoders on a dataset's splits, into the content-addressed cache that
every pair then reads (resumable; on this machine or on Ray)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Extracted:
    """One cache entry a call made or found: whose, of what, where, and how it came to be."""

    model: str
    split: str
    shape: tuple[int, ...]
    path: Path
    #: :class:`~probe.features.cache.ExtractionStats`: from the cache, chunks computed and resumed, rate
    stats: Any
    #: inputs that could not be read (listed in the entry's meta.json)
    skipped: int
    on_ray: bool = False


@dataclass
class ExtractionPlan:
    """The encoders, the loaded splits, the corpus a fitted encoder fits on, and the options."""

    specs: list[Any]
    skipped: list[Any]
    splits: dict[str, Any]
    fit: Any
    options: Any
    #: with ``layers``: each model's layer variants, by model name (read together, one pass per split)
    layer_specs: dict[str, list[Any]] = field(default_factory=dict)


def plan_extraction(models: str | Sequence[str], *, dataset: str = "shapes", splits: Sequence[str] = (),
                    batch_size: int | None = None, workers: int | None = None, dtype: str = "auto",
                    decode: str = "workers", on_bad_image: str = "skip", results_dir: str | Path | None = None,
                    cache_dir: str | Path | None = None, device: str | None = None, executor: str = "local",
                    ray_address: str | None = None, registry: Sequence[str | Path] = (),
                    allow_download: bool = False, progress: bool = True, dry_run: bool = False,
                    layers: str | None = None) -> ExtractionPlan:
    """Check every input, resolve the models (each must load here) and load the splits; no encoder runs
    (with ``layers``, each model is loaded once on the CPU to count its layers)."""
    from probe.api.common import load_registry, names
    from probe.data import get_dataset
    from probe.data.splits import load_split
    from probe.encoders.loadable import check, resolve_models
    from probe.errors import UnavailableError
    from probe.features import ExtractOptions, fitted_on_corpus
    from probe.pipeline.ray_executor import check_executor
    from probe.workspace import folders

    check_executor(executor, ray_address)
    specs, unavailable = resolve_models(load_registry(registry), names(models), allow_download=allow_download)
    for spec in specs:
        status = check(spec, allow_download=allow_download)
        if not status.ok:
            raise UnavailableError(f"model {spec.name!r} cannot be loaded here: {status.reason}")
    ds = get_dataset(dataset)
    chosen = list(splits) or list(ds.info.splits)
    loaded = {split: load_split(ds, split) for split in chosen}
    fit = None
    if "train" in ds.info.splits and any(fitted_on_corpus(s) for s in specs):
        fit = loaded["train"] if "train" in loaded else ds.load("train")
    options = ExtractOptions(cache_dir=folders(results_dir, cache_dir, dry_run)[1], batch_size=batch_size,
                             workers=workers, dtype=dtype, on_bad_image=on_bad_image, device=device,
                             allow_download=allow_download, decode=decode, progress=progress)
    layer_specs: dict[str, list[Any]] = {}
    if layers is not None:
        from probe.errors import ProbeError
        from probe.features.layers import layer_variants

        if executor != "local":
            raise ProbeError("--layers extracts on this machine (one forward pass for every layer); drop --executor ray")
        layer_specs = {spec.name: layer_variants(spec, layers, allow_download) for spec in specs}
    return ExtractionPlan(specs, unavailable, loaded, fit, options, layer_specs)


def extract(models: str | Sequence[str], *, executor: str = "local", ray_address: str | None = None,
            on_entry: Callable[[Extracted], None] | None = None, **settings: Any) -> list[Extracted]:
    """Extract (or find in the cache) the features of every model in ``models`` (names or shell
    patterns) on each split of ``dataset`` (``splits``: all by default); returns one
    :class:`Extracted` per entry, and calls ``on_entry`` with each as it is done.

    ``layers`` (``"all"``, ``"last:K"``, ``"2,4"``) extracts each model at those hidden layers instead of
    its output, every layer of a split from one forward pass, each cached under its own key.

    Other keyword arguments are :func:`plan_extraction`'s: ``dataset``, ``splits``, ``batch_size``,
    ``workers``, ``dtype``, ``decode``, ``on_bad_image``, ``results_dir``, ``cache_dir``,
    ``device``, ``registry``, ``allow_download``, ``progress``.

    Example::

        import probe
        for entry in probe.extract(["test/tiny-vit"], dataset="shapes", splits=["val"]):
            print(entry.model, entry.split, entry.shape, entry.path)
    """
    import dataclasses

    from probe.api.common import log_skipped
    from probe.features import ExtractionStats, split_features
    from probe.features.extract import new_job
    from probe.pipeline.ray_executor import RayExecutor, executor_for, for_workers

    new_job()
    planned = plan_extraction(models, executor=executor, ray_address=ray_address, **settings)
    log_skipped(planned.skipped)
    options = dataclasses.replace(planned.options, cache_dir=for_workers(executor, planned.options.cache)[0])
    out = []
    with executor_for(executor, ray_address, (options.cache,)) as chosen:
        on_ray = isinstance(chosen, RayExecutor)
        if on_ray:
            chosen.connect()
        for split, data in planned.splits.items():
            if planned.layer_specs:  # every layer of each model from one pass over the split
                from probe.features.layers import extract_layers

                for layers in planned.layer_specs.values():
                    extract_layers(layers, data, options)
            for spec in [s for base in planned.specs for s in planned.layer_specs.get(base.name, [base])]:
                stats = ExtractionStats()
                if on_ray:
                    from probe.pipeline.ray_extract import ray_split_features

                    result = ray_split_features(spec, data, options, fit_data=planned.fit, stats=stats)
                else:
                    result = split_features(spec, data, options, fit_data=planned.fit, stats=stats)
                entry = Extracted(spec.name, split, tuple(result.features.shape), result.path, stats,
                                  len(result.meta["skipped"]), on_ray)
                out.append(entry)
                if on_entry is not None:
                    on_entry(entry)
    return out
