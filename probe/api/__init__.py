"""probe's Python API: every command's work as a typed function (the command line parses, calls one
of these and prints). Importing it is cheap; each function imports what it needs."""

from __future__ import annotations

from probe.api.alignment import RunPlan, RunResult, head_configs, plan_run, run
from probe.api.catalogues import benchmarks, models
from probe.api.correlation import CorrelationResult, correlate
from probe.api.evaluation import Scored, evaluate
from probe.api.extraction import Extracted, extract, plan_extraction
from probe.api.reporting import write_report
from probe.api.selection import SelectionResult, plan_selection, select
from probe.api.tuning import TunePlan, plan_tune, tune

__all__ = ["CorrelationResult", "Extracted", "RunPlan", "RunResult", "Scored", "SelectionResult", "TunePlan",
           "benchmarks", "correlate", "evaluate", "extract", "head_configs", "models", "plan_extraction", "plan_run",
           "plan_selection", "plan_tune", "run", "select", "tune", "write_report"]
