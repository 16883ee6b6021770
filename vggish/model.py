"""The VGGish model on TensorFlow: loads a checkpoint once into its own graph and session, then embeds.

Raw embeddings are the pre-activation output of the 128-wide fc2 layer (no ReLU), as in the
released model; postprocess() applies the release's PCA whitening and 8-bit quantization. Batching,
files and postprocessing are vggish.embedder.Embedder's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from vggish import params, slim_model
from vggish.checkpoint import validate_checkpoint
from vggish.embedder import Embedder
from vggish.errors import CheckpointError

logger = logging.getLogger(__name__)
tf1 = tf.compat.v1


class VGGish(Embedder):
    """VGGish CNN restored from `checkpoint_path` (released V1 file, or a V2 prefix) plus PCA postprocessing.

    intra_op_threads / inter_op_threads: sizes of the TensorFlow CPU thread pools of this model's
    own session (None = TensorFlow's defaults: all cores, shared inter-op pool).
    Raises CheckpointError for a missing, truncated, corrupt or wrong-layout checkpoint, before
    building anything when the problem is visible in the checkpoint's header.
    """

    engine = "tf"

    def __init__(
        self, checkpoint_path: str | Path, pca_params_path: str | Path | None = None, *,
        intra_op_threads: int | None = None, inter_op_threads: int | None = None,
    ) -> None:
        validate_checkpoint(checkpoint_path)
        super().__init__(checkpoint_path, pca_params_path)
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

    def _embed_batch(self, examples: np.ndarray) -> np.ndarray:
        return self._session.run(self._embedding, {self._features: examples})

    def close(self) -> None:
        """Release the TensorFlow session (idempotent)."""
        self._session.close()
