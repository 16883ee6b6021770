"""Helpers of the fault-injection suite: short generated clips and features, the CLI in this process or in a
child process (optionally killed at a chosen moment), filling and remounting the small tmpfs of
`small_disk`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.cli import main

CHILD_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def write_tones(folder: Path, count: int, seconds: float = 1.5) -> list[str]:
    """`count` 16 kHz tones `t{i}.wav` in folder (created); returns their clip ids."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    for i in range(count):
        sf.write(folder / f"t{i}.wav", 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t), 16000, subtype="PCM_16")
    return [f"t{i}.wav" for i in range(count)]


def write_features(folder: Path, count: int) -> list[str]:
    """An `extract --format npz` folder (created) of `count` clips `c{i}.wav` of 3 frames each (random
    embeddings, seed 0); returns their clip ids."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        np.savez(folder / f"c{i}.wav.npz", embedding=rng.integers(0, 255, (3, 128), dtype=np.uint8),
                 timestamps=np.arange(3) * 0.96)
    return [f"c{i}.wav" for i in range(count)]


def run_cli(checkpoint: Path, *args: str) -> int:
    """`audiotag --vggish-checkpoint CHECKPOINT ARGS...` in this process; returns the exit status."""
    return main(["--vggish-checkpoint", str(checkpoint), *args])


def one_line_error(err: str) -> str:
    """The single `audiotag: error: ...` line of stderr (asserting there is exactly one and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("audiotag: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


def cli_process(*args: str, kill_at: str | None = None, **popen: object) -> subprocess.Popen:
    """`python -m pipeline ARGS` as a child process; with kill_at, tests/faults/killer.py makes it SIGKILL
    itself at that moment (see there)."""
    command = [sys.executable, "-m", "pipeline", *args]
    if kill_at is not None:
        command = [sys.executable, str(Path(__file__).with_name("killer.py")), kill_at, *args]
    return subprocess.Popen(command, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill `disk` with one file until only about `leave_bytes` stay free; returns that file."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def remount_read_only(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, capture_output=True)
