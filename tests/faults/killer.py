"""Run `audiotag ARGS...` and SIGKILL this very process at a chosen moment (fault injection for tests).

    python tests/faults/killer.py MOMENT ARGS...

MOMENT:
- `before-rename:NAME:N`  just before the N-th atomic rename of a file named NAME*, i.e. with its
  temporary file complete on disk (safeio.atomic's os.replace);
- `during-merge`  just after the HDF5 merge's child process has started (it then notices and stops, or
  finishes first: both must leave a folder that the rerun completes);
- `after-merge`  right after the merged `embeddings.h5` is in place, before the parts are deleted;
- `beam-records:OUT`  once a Beam bundle has finished and a `beam-temp-embeddings-*` folder in OUT holds a
  file with records (closed by its writer, not yet renamed into place): SIGKILL to the whole process group,
  Beam's worker processes included. The process must lead its own session (Popen start_new_session=True).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_group_once_written(out: Path) -> None:
    """Patch Beam's local runner: after each bundle, SIGKILL the process group if records are written."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    if os.getsid(0) != os.getpid():
        raise SystemExit("beam-records: start this process in a session of its own (start_new_session=True)")
    original = fn_runner.FnApiRunner._execute_bundle

    def execute_bundle(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if any(path.stat().st_size for path in out.glob("beam-temp-embeddings-*/*")):
            os.killpg(0, signal.SIGKILL)
        return result

    fn_runner.FnApiRunner._execute_bundle = execute_bundle


def _arm(moment: str) -> None:
    import pipeline.writers

    if moment.startswith("beam-records:"):
        _kill_group_once_written(Path(moment.split(":", 1)[1]))
    elif moment.startswith("before-rename:"):
        _, name, nth = moment.split(":")
        seen = []
        original = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name.startswith(name):
                seen.append(dst)
                if len(seen) == int(nth):
                    _die()
            return original(src, dst, *args, **kwargs)

        os.replace = replace
    elif moment in ("during-merge", "after-merge"):
        original_run = pipeline.writers.run_isolated

        class KillOnStart:
            """A multiprocessing context whose processes kill this one as soon as they have started."""

            def __init__(self, context):
                self.context = context

            def Pipe(self, *args, **kwargs):  # noqa: N802 (multiprocessing's name)
                return self.context.Pipe(*args, **kwargs)

            def Process(self, *args, **kwargs):  # noqa: N802
                return KilledOnStart(self.context.Process(*args, **kwargs))

        class KilledOnStart:
            """A process whose start() kills this process once the child runs (the rest: delegated)."""

            def __init__(self, process):
                self.process = process

            def start(self) -> None:
                self.process.start()
                time.sleep(0.05)
                _die()

            def __getattr__(self, name):
                return getattr(self.process, name)

        def run_isolated(context, target, args, *, path, **kwargs):
            if moment == "during-merge":
                context = KillOnStart(context)
            original_run(context, target, args, path=path, **kwargs)
            if moment == "after-merge":
                _die()

        pipeline.writers.run_isolated = run_isolated
    else:
        raise SystemExit(f"unknown moment {moment!r}")


if __name__ == "__main__":
    _arm(sys.argv[1])
    from pipeline.cli import main

    sys.exit(main(sys.argv[2:]))
