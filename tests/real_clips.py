"""A small tree of real recordings from ../shared/audio under clip ids in sub-folders (44.1 and 16 kHz, WAV
and MP3, one under a patch long): the inputs of the extract and beam-extract tests."""

from __future__ import annotations

import shutil
from pathlib import Path

REAL_CLIPS = {  # clip id -> file in ../shared/audio
    "scenes/kong.wav": "kong_appendix_01.wav",  # 44.1 kHz, 4.7 s
    "speech/16k.wav": "speech_16k.wav",
    "dog.wav": "dog_975ms.wav",  # shorter than a patch: padded
    "baby.mp3": "esc10_crying_baby_1.mp3",
}


def copy_real_clips(shared_audio: Path, root: Path) -> Path:
    """Copy each of REAL_CLIPS to root/<clip id>; returns root."""
    for clip_id, name in REAL_CLIPS.items():
        (root / clip_id).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_audio / name, root / clip_id)
    return root
