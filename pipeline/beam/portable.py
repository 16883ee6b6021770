"""A cluster set-up on one machine: Beam's own job service and an external SDK worker pool, each a process
of its own on a free local port, as a cluster's job server and worker containers would be.

`audiotag beam-extract` and `beam-tag` then run through Beam's PortableRunner with the pipeline options of
`PortableServices.pipeline_args()`: the pipeline is submitted to the job service, which has the worker pool
start SDK worker processes; these import audiotag from this Python installation. Beam's local job service
runs one SDK worker process per job. Used by the tests and benchmarks/bench_beam.py; the same commands by
hand are in docs/beam.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

JOB_SERVICE = "apache_beam.runners.portability.local_job_service_main"
WORKER_POOL = "apache_beam.runners.worker.worker_pool_main"
HOST = "localhost"
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class PortableServices:
    """Where the job service and the worker pool listen (`localhost:PORT`)."""

    job_endpoint: str
    worker_pool: str

    def pipeline_args(self) -> list[str]:
        """The Beam pipeline options that run a pipeline on these services."""
        return ["--runner=PortableRunner", f"--job_endpoint={self.job_endpoint}",
                "--environment_type=EXTERNAL", f"--environment_config={self.worker_pool}"]


def free_port() -> int:
    """A TCP port that is free on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_environment() -> dict[str, str]:
    """This environment with this Python's bin/ first on PATH: the worker pool starts its SDK workers as
    `python` from PATH, which must be the Python that has audiotag installed."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}


def _start(module: str, args: list[str], log: Path) -> subprocess.Popen:
    """`python -m module args` in a session of its own (so that its whole process group can be stopped),
    stdout and stderr to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", module, *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=service_environment(), start_new_session=True)


def _wait_listening(process: subprocess.Popen, port: int, log: Path, deadline: float) -> None:
    """Block until `port` accepts connections; RuntimeError naming the log if the process exits first or the
    deadline passes."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{log}: the Beam service exited with status {process.returncode} at start-up")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{log}: the Beam service did not listen on port {port} in time")


def stop(process: subprocess.Popen) -> None:
    """Stop a service and every process it started (its process group): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def local_portable_services(log_dir: Path,
                            timeout: float = START_TIMEOUT_SECONDS) -> Iterator[PortableServices]:
    """Start the job service and the worker pool (logs in `log_dir`), yield their endpoints once both
    listen, and stop both process groups however the block ends."""
    log_dir.mkdir(parents=True, exist_ok=True)
    job_port = free_port()
    pool_port = free_port()
    while pool_port == job_port:
        pool_port = free_port()
    processes: list[subprocess.Popen] = []
    try:
        job_log, pool_log = log_dir / "job_service.log", log_dir / "worker_pool.log"
        processes.append(_start(JOB_SERVICE, [f"--port={job_port}"], job_log))
        processes.append(_start(WORKER_POOL, [f"--service_port={pool_port}"], pool_log))
        deadline = time.monotonic() + timeout
        _wait_listening(processes[0], job_port, job_log, deadline)
        _wait_listening(processes[1], pool_port, pool_log, deadline)
        logger.info("Beam job service on %s:%d, worker pool on %s:%d", HOST, job_port, HOST, pool_port)
        yield PortableServices(f"{HOST}:{job_port}", f"{HOST}:{pool_port}")
    finally:
        for process in processes:
            stop(process)
