"""Generated labelled audio for the `train` / `evaluate` tests: a folder of class folders of 1-2 s clips of
distinct character (tones, white noise, click trains), and the tiny training settings that keep runs short."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
CLASSES = ("clicks", "noise", "tone")
TINY = ["--hidden-units", "8", "--iterations", "4", "--batch-size", "8", "--checkpoint-every", "2", "--folds",
        "2", "--no-progress"]


def write_clip(path: Path, kind: str, index: int) -> None:
    """Clip `index` (1 + index / 5 s long) of `kind`, one of CLASSES, as 16 kHz PCM16 at `path`."""
    n = int(RATE * (1 + index / 5))
    t = np.arange(n) / RATE
    if kind == "tone":
        samples = 0.3 * np.sin(2 * np.pi * (300 + 40 * index) * t)
    elif kind == "noise":
        samples = 0.1 * np.random.default_rng(index).standard_normal(n)
    else:
        samples = np.zeros(n)
        samples[:: RATE // (8 + index)] = 0.8
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, RATE, subtype="PCM_16")


def write_class_folders(root: Path, per_class: int = 6) -> Path:
    """root/<class>/<class><i>.wav for each of CLASSES; returns root."""
    for kind in CLASSES:
        for i in range(per_class):
            write_clip(root / kind / f"{kind}{i}.wav", kind, i)
    return root
