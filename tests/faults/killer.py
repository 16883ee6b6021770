"""Run `audiotag ARGS...` and SIGKILL this very process at a chosen moment (fault injection for tests).

    python tests/faults/killer.py MOMENT ARGS...

MOMENT:
- `before-rename:NAME:N`  just before the N-th atomic rename of a file named NAME*, i.e. with its
  temporary file complete on disk (safeio.atomic's os.replace);
- `during-merge`  just after the HDF5 merge's child process has started (it then notices and stops, or
  finishes first: both must leave a folder that the rerun completes);
- `after-merge`  right after the merged `embeddings.h5` is in place, before the parts are deleted.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(moment: str) -> None:
    import pipeline.writers

    if moment.startswith("before-rename:"):
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
