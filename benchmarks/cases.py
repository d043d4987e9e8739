"""The benchmark cases by name (``python -m benchmarks [CASE ...]``)."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.metric_cases import knn, retrieval, selection, similarity
from benchmarks.model_cases import (
    channels_last,
    cli_help,
    cpu_batch,
    extraction,
    jpeg_decode,
    layers,
    shard_extraction,
    training,
)
from benchmarks.scale_cases import out_of_core_training, ray_overhead, sweep_memory
from benchmarks.tune_cases import tune_memory, tune_step

CASES: dict[str, Callable[[], dict | list[dict]]] = {
    "retrieval": retrieval, "knn": knn, "similarity": similarity, "selection": selection, "cli_help": cli_help,
    "extraction": extraction, "training": training, "cpu_batch": cpu_batch,
    "shard_extraction": shard_extraction, "out_of_core_training": out_of_core_training,
    "sweep_memory": sweep_memory, "ray_overhead": ray_overhead, "tune_step": tune_step,
    "channels_last": channels_last, "jpeg_decode": jpeg_decode, "tune_memory": tune_memory,
    "layers": layers}
