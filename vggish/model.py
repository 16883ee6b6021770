"""The VGGish model: loads a checkpoint once into its own graph and session, then embeds examples.

Raw embeddings are the pre-activation output of the 128-wide fc2 layer (no ReLU), as in the
released model; postprocess() applies the release's PCA whitening and 8-bit quantization.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import numpy as np
import tensorflow as tf

from vggish import input as vggish_input
from vggish import params, slim_model, synthetic
from vggish.checkpoint import validate_checkpoint
from vggish.errors import CheckpointError
from vggish.postprocess import Postprocessor

logger = logging.getLogger(__name__)
tf1 = tf.compat.v1


class VGGish:
    """VGGish CNN restored from `checkpoint_path` (released V1 file, or a V2 prefix) plus PCA postprocessing.

    intra_op_threads / inter_op_threads: sizes of the TensorFlow CPU thread pools of this model's
    own session (None = TensorFlow's defaults: all cores, shared inter-op pool).
    Raises CheckpointError for a missing, truncated, corrupt or wrong-layout checkpoint, before
    building anything when the problem is visible in the checkpoint's header.
    """

    def __init__(
        self, checkpoint_path: str | Path, pca_params_path: str | Path | None = None, *,
        intra_op_threads: int | None = None, inter_op_threads: int | None = None,
    ) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        validate_checkpoint(self.checkpoint_path)
        self.synthetic = synthetic.marker_path(self.checkpoint_path).is_file()
        if self.synthetic:
            logger.warning("%s is a SYNTHETIC checkpoint (random weights): its embeddings are meaningless",
                           self.checkpoint_path)
        self.postprocessor = Postprocessor(pca_params_path)
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._features = tf1.placeholder(
                tf.float32, (None, params.NUM_FRAMES, params.NUM_BANDS), name="input_features")
            self._embedding = slim_model.define_vggish(self._features)
            saver = tf1.train.Saver(slim_model.model_variables(self._graph))
        config = tf1.ConfigProto(
            intra_op_parallelism_threads=intra_op_threads or 0,
            inter_op_parallelism_threads=inter_op_threads or 0,
            # TensorFlow's inter-op pool is process-wide unless the session asks for its own.
            use_per_session_threads=inter_op_threads is not None,
        )
        self._session = tf1.Session(graph=self._graph, config=config)
        try:
            with self._graph.as_default():
                saver.restore(self._session, str(self.checkpoint_path))
        except tf.errors.OpError as exc:
            self._session.close()
            logger.debug("restore of %s failed: %s", self.checkpoint_path, exc)
            raise CheckpointError(
                self.checkpoint_path,
                f"the weights could not be read: the file is corrupt or truncated ({type(exc).__name__})",
            ) from exc
        self._graph.finalize()
        logger.info("loaded VGGish%s from %s", " (SYNTHETIC weights)" if self.synthetic else "",
                    self.checkpoint_path)

    def embed(self, examples: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Log-mel examples float [N, 96, 64] -> raw (pre-activation) embeddings float32 [N, 128]."""
        examples = np.asarray(examples, dtype=np.float32)
        if examples.ndim != 3 or examples.shape[1:] != (params.NUM_FRAMES, params.NUM_BANDS):
            expected = f"[N, {params.NUM_FRAMES}, {params.NUM_BANDS}]"
            raise ValueError(f"expected examples of shape {expected}, got {examples.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        outputs = [self._session.run(self._embedding, {self._features: examples[start : start + batch_size]})
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

    def close(self) -> None:
        """Release the TensorFlow session (idempotent)."""
        self._session.close()

    def __enter__(self) -> VGGish:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
