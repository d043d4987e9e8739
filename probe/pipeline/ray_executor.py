"""Running a sweep's items on a Ray cluster (``--executor ray``): the same work, spread over machines.

The runner's jobs go to Ray unchanged. First every encoder the jobs need gets its features into the
cache, one Ray task per encoder (on a GPU when the cluster has them); then every job (a pair with its
pending head configurations, one record per unit) is one Ray task that reads those features from
the cache and returns its records, which the driver writes exactly as the local executor does.
Saved heads are written by the task into the results folder. Nothing is scheduled by hand: Ray
places the tasks and retries a task whose worker died.

The cache and results folders must be one shared filesystem for every node (NFS, Lustre, a
mounted bucket): that is checked before any work, with a file the driver writes and every node
must see. Without a shared filesystem, run ``probe run`` per machine on disjoint encoder sets and
gather the record folders (records have unique names, so an rsync merges them) before
``probe report``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.pipeline.runner import ITEM_ERRORS, Job, PairWork, Sink, features_failed, job_records, reason

EXECUTORS = ("local", "ray")
#: seconds an unreachable --ray-address may take before it is reported
CONNECT_TIMEOUT = 15.0
INSTALL = "pip install 'probe[ray]'  (or: pip install 'ray[data]>=2.9')"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ProbeError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail within ``timeout`` seconds, in one line, when ``host:port`` does not answer (``ray.init``
    itself can wait for minutes)."""
    if address in ("auto", "local") or not address:
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ProbeError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, ray://head:10001) "
                         "or 'auto'")
    try:
        connection = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise ProbeError(f"--ray-address {address}: nothing answers there within {timeout:.0f} s "
                         f"({type(exc).__name__}: {exc}); is the Ray head running (`ray start --head`)?") from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):  # the greeting is plaintext HTTP/2
        connection.close()
        return
    with connection:
        why = _not_grpc(connection, min(timeout, HANDSHAKE_TIMEOUT))
    if why:
        raise ProbeError(f"--ray-address {address}: something answers there, but not Ray ({why}); give the head's "
                         "GCS address (HOST:6379 by default) or its Ray Client address (ray://HOST:10001)")


#: seconds an address that accepts connections has to answer the HTTP/2 greeting every Ray endpoint gives
HANDSHAKE_TIMEOUT = 5.0
#: HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5)
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _not_grpc(connection: socket.socket, timeout: float) -> str | None:
    """Why the peer is not a gRPC server, or None. Ray's GCS and its Client server both speak gRPC,
    so over HTTP/2 a server's first frame is SETTINGS (type 4, stream 0). Anything else (an HTTP/1
    reply, an SSH banner, silence) is not Ray, and ``ray.init`` would wait on it for minutes."""
    try:
        connection.settimeout(timeout)
        connection.sendall(_HTTP2_HELLO)
        head = b""
        while len(head) < 9:
            chunk = connection.recv(9 - len(head))
            if not chunk:
                return "it closed the connection on an HTTP/2 greeting"
            head += chunk
    except TimeoutError:
        return f"no answer to an HTTP/2 greeting within {timeout:.0f} s"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if head[3] != 4 or int.from_bytes(head[5:9], "big") & 0x7FFFFFFF != 0:
        return f"it answered {head[:9]!r}, not an HTTP/2 SETTINGS frame"
    return None


def _sees(path: str, name: str) -> tuple[str, bool]:
    """Run on a node: its address and whether it sees the driver's marker file."""
    import ray

    return ray.util.get_node_ip_address(), (Path(path) / name).is_file()


def _features(work: PairWork, spec: Any) -> tuple[str | None, int]:
    """Run on a worker: the encoder's features into the shared cache. ``(failure reason or None, rows
    made ready)``: rows of every split role and prompt set, extracted or found in the cache."""
    try:
        features = work.features(spec)
    except ITEM_ERRORS as exc:
        return features_failed(spec, exc), 0
    parts = [*getattr(features, "by_role", {}).values(), *getattr(features, "prompts", {}).values()]
    return None, sum(len(part) for part in parts)


def _job(work: PairWork, job: Job) -> list[tuple[int, Any]]:
    """Run on a worker: ``(unit index, record)`` for every pending unit of the job."""
    features = []
    for spec in job.item:
        try:
            features.append(work.features(spec))
        except ITEM_ERRORS as exc:
            return [(i, work.failure(job.item, unit, features_failed(spec, exc))) for i, unit in enumerate(job.units)]
    index = {id(unit): i for i, unit in enumerate(job.units)}
    return [(index[id(unit)], record) for unit, record in job_records(work, job, features)]


def _gather_features(ray: Any, pending: dict[Any, str]) -> dict[str, str | None]:
    """Encoder name -> why its features failed (None when they are in the cache), collected as the
    tasks finish, with a bar of encoders done and the rows made ready per second on a terminal; a
    task that died after its retries fails that encoder's pairs."""
    import time

    from tqdm.auto import tqdm

    reasons: dict[str, str | None] = {}
    rows, started = 0, time.perf_counter()
    with tqdm(total=len(pending), desc="features on Ray", unit=" encoder", disable=None, leave=False) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(ready[0])
            try:
                reasons[name], made = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                reasons[name], made = f"features of {name} failed: Ray task failed: {reason(exc)}", 0
            rows += made
            bar.set_postfix_str(f"{rows / max(time.perf_counter() - started, 1e-9):,.0f} rows/s")
            bar.update(1)
    return reasons


@dataclass
class RayExecutor:
    """Runs the runner's jobs as Ray tasks (see the module docstring)."""

    address: str | None = None
    #: folders every node must see (the feature cache and the results folder)
    shared: Sequence[Path] = ()
    #: CPUs each task takes (a GPU too when the cluster has any)
    cpus_per_task: float = 1.0
    started_here: bool = False

    def connect(self) -> Any:
        import sys

        ray = import_ray()
        if not ray.is_initialized():
            try:
                info = ray.init(address=self.address or None, logging_level="ERROR", log_to_driver=False)
            except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
                where = f"--ray-address {self.address}" if self.address else "a local Ray"
                raise ProbeError(f"{where}: Ray could not connect ({reason(exc)})") from None
            self.started_here = True
            url = getattr(info, "dashboard_url", None)
            if url:
                print(f"Ray dashboard: http://{url}", file=sys.stderr, flush=True)
        self._check_shared(ray)
        return ray

    def _check_shared(self, ray: Any) -> None:
        """Every node must see the cache and results folders: a marker written here, looked for there."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        name = f".probe-visible-{uuid.uuid4().hex}"
        for folder in self.shared:
            folder.mkdir(parents=True, exist_ok=True)
            marker = folder / name
            marker.write_text("written by the probe driver; removed when the check ends\n")
            try:
                nodes = [n for n in ray.nodes() if n.get("Alive")]
                probe_task = ray.remote(num_cpus=0)(_sees)
                seen = ray.get([probe_task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                    n["NodeID"], soft=False)).remote(str(folder.resolve()), name) for n in nodes])
            finally:
                marker.unlink(missing_ok=True)
            blind = [node for node, ok in seen if not ok]
            if blind:
                raise ProbeError(f"{folder} is not visible from the Ray node(s) {', '.join(blind)}: the cache and "
                                 "results folders must be on a filesystem every node mounts at the same path")

    def execute(self, jobs: Sequence[Job], work: PairWork, sink: Sink) -> None:
        ray = self.connect()
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        options = {"num_cpus": self.cpus_per_task, "num_gpus": gpus, "max_retries": 2}
        remote_features = ray.remote(_features).options(**options)
        remote_job = ray.remote(_job).options(**options)
        work_ref = ray.put(work)
        specs = {spec.name: spec for job in jobs for spec in job.item}
        reasons = _gather_features(ray, {remote_features.remote(work_ref, s): name for name, s in specs.items()})
        pending: dict[Any, Job] = {}
        for job in jobs:
            failed = next((reasons[s.name] for s in job.item if reasons[s.name]), None)
            if failed:
                for unit in job.units:
                    sink(job.item, unit, work.failure(job.item, unit, failed))
            else:
                pending[remote_job.remote(work_ref, job)] = job
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker died, after its retries
                results = [(i, work.failure(job.item, unit, f"Ray task failed: {reason(exc)}"))
                           for i, unit in enumerate(job.units)]
            for i, record in sorted(results, key=lambda r: r[0]):
                sink(job.item, job.units[i], record)

    def close(self) -> None:
        if self.started_here:
            import ray

            ray.shutdown()
            self.started_here = False


def check_executor(name: str, address: str | None) -> None:
    """Refuse a bad ``--executor`` / ``--ray-address`` before any work: a typo, an address without
    Ray, Ray not installed, an address that is not HOST:PORT."""
    if name not in EXECUTORS:
        raise ProbeError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    if name == "local" and address:
        raise ProbeError("--ray-address needs --executor ray")
    if name == "ray":
        import_ray()
        if address:
            check_reachable(address)


def for_workers(name: str, *folders: Path) -> tuple[Path, ...]:
    """The folders as the executor's workers must be given them: absolute for Ray, whose workers
    need not share this process's working folder."""
    return tuple(folder.resolve() for folder in folders) if name == "ray" else folders


@contextmanager
def executor_for(name: str, address: str | None, shared: Sequence[Path]) -> Iterator[Any]:
    """The executor ``--executor NAME`` asks for (checked by :func:`check_executor`); a Ray instance
    it started is shut down on leaving."""
    from probe.pipeline.runner import LocalExecutor

    check_executor(name, None)
    if name != "ray":
        yield LocalExecutor()
        return
    executor = RayExecutor(address=address, shared=tuple(shared))
    try:
        yield executor
    finally:
        executor.close()


__all__ = ["EXECUTORS", "RayExecutor", "check_executor", "check_reachable", "executor_for", "for_workers"]
