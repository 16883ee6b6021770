"""Google's VGGish audio embedding, numerically as the reference: audio -> log-mel examples -> CNN -> PCA.

The engines that run the CNN (VGGish on TensorFlow, LiteVGGish on LiteRT, and load_embedder, which picks
one) are imported lazily, so that the front end works without loading TensorFlow or LiteRT.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vggish.audio_io import read_audio
from vggish.errors import AudioFileError, CheckpointError, LiteEngineError, PCAParamsError
from vggish.input import example_start_times, iter_file_examples, waveform_to_examples, wavfile_to_examples
from vggish.postprocess import Postprocessor

if TYPE_CHECKING:
    from vggish.embedder import Embedder
    from vggish.engines import load_embedder
    from vggish.lite_model import LiteVGGish
    from vggish.model import VGGish

__all__ = [
    "AudioFileError",
    "CheckpointError",
    "Embedder",
    "LiteEngineError",
    "LiteVGGish",
    "PCAParamsError",
    "Postprocessor",
    "VGGish",
    "example_start_times",
    "iter_file_examples",
    "load_embedder",
    "read_audio",
    "waveform_to_examples",
    "wavfile_to_examples",
]


_LAZY = {"VGGish": "vggish.model", "LiteVGGish": "vggish.lite_model", "Embedder": "vggish.embedder",
         "load_embedder": "vggish.engines"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vggish' has no attribute {name!r}")
