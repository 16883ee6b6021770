"""What every VGGish engine shares: batching, streaming files, PCA postprocessing, closing.

An engine (vggish.model.VGGish on TensorFlow, vggish.lite_model.LiteVGGish on LiteRT) implements only
`_embed_batch`, one CNN call on one batch; vggish.engines.load_embedder picks one.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import numpy as np

from vggish import input as vggish_input
from vggish import params, synthetic
from vggish.postprocess import Postprocessor

logger = logging.getLogger(__name__)


class Embedder(ABC):
    """The VGGish CNN of `checkpoint_path` plus PCA postprocessing; `engine` names the implementation.

    `synthetic` is True for a SYNTHETIC checkpoint (random weights), which is logged as a warning.
    """

    engine: str

    def __init__(self, checkpoint_path: str | Path, pca_params_path: str | Path | None = None, *,
                 synthetic_weights: bool = False) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.synthetic = synthetic_weights or synthetic.marker_path(self.checkpoint_path).is_file()
        if self.synthetic:
            logger.warning("%s is a SYNTHETIC checkpoint (random weights): its embeddings are meaningless",
                           self.checkpoint_path)
        self.postprocessor = Postprocessor(pca_params_path)

    @abstractmethod
    def _embed_batch(self, examples: np.ndarray) -> np.ndarray:
        """One CNN call: float32 [n >= 1, 96, 64] -> raw embeddings float32 [n, 128]."""

    def embed(self, examples: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Log-mel examples float [N, 96, 64] -> raw (pre-activation) embeddings float32 [N, 128]."""
        examples = np.asarray(examples, dtype=np.float32)
        if examples.ndim != 3 or examples.shape[1:] != (params.NUM_FRAMES, params.NUM_BANDS):
            expected = f"[N, {params.NUM_FRAMES}, {params.NUM_BANDS}]"
            raise ValueError(f"expected examples of shape {expected}, got {examples.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        outputs = [self._embed_batch(examples[start : start + batch_size])
                   for start in range(0, len(examples), batch_size)]
        if not outputs:
            return np.zeros((0, params.EMBEDDING_SIZE), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        """Raw embeddings [N, 128] -> PCA-whitened, quantized uint8 [N, 128] (the AudioSet release format)."""
        return self.postprocessor.postprocess(raw)

    def embed_file(
        self, path: str | Path, batch_size: int = 64, *, hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
        pad_short: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stream an audio file through the model: raw embeddings float32 [N, 128] and example start
        times float64 [N] (s). Memory stays flat in the file's length. Raises AudioFileError."""
        blocks = vggish_input.iter_file_examples(path, hop_seconds=hop_seconds, pad_short=pad_short)
        raw = self.embed_stream(blocks, batch_size)
        return raw, vggish_input.example_start_times(len(raw), hop_seconds)

    def embed_stream(self, example_blocks: Iterable[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Embed example blocks float32 [n_i, 96, 64] of any sizes in batches of `batch_size` patches (the
        last one shorter): raw embeddings float32 [N, 128], as embed() of their concatenation."""
        pending: list[np.ndarray] = []
        pending_count = 0
        outputs: list[np.ndarray] = []
        for block in example_blocks:
            pending.append(block)
            pending_count += len(block)
            if pending_count >= batch_size:
                batch = np.concatenate(pending)
                full = len(batch) // batch_size * batch_size
                outputs.append(self.embed(batch[:full], batch_size))
                pending, pending_count = [batch[full:]], len(batch) - full
        if pending_count:
            outputs.append(self.embed(np.concatenate(pending), batch_size))
        return np.concatenate(outputs) if outputs else np.zeros((0, params.EMBEDDING_SIZE), np.float32)

    @abstractmethod
    def close(self) -> None:
        """Release the engine's resources (idempotent)."""

    def __enter__(self) -> Embedder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
