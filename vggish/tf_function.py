"""The VGGish CNN as a TensorFlow 2 function, for graphs that are exported (SavedModel, TF-Lite).

The network is not redefined: vggish.slim_model.define_vggish, the TF-Slim graph of Google's reference, is
traced once with tf.compat.v1.wrap_function, which lifts its 18 variables into TF2 resource variables; each
variable then gets its value from the checkpoint by its own name (the reader handles the released V1 file
and V2 prefixes alike). The result embeds exactly as vggish.VGGish does (same graph, same weights).
"""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf

from vggish import params, slim_model
from vggish.checkpoint import checkpoint_status, validate_checkpoint
from vggish.errors import CheckpointError

logger = logging.getLogger(__name__)

EXAMPLES_SPEC = tf.TensorSpec((None, params.NUM_FRAMES, params.NUM_BANDS), tf.float32)


class VGGishFunction(tf.Module):
    """Log-mel examples float32 [N, 96, 64] -> raw embeddings float32 [N, 128], weights from a checkpoint.

    `status` is vggish.checkpoint.checkpoint_status of the checkpoint ("verified-release", "synthetic",
    "unverified"). Raises CheckpointError for a missing, corrupt or wrong-layout checkpoint.
    """

    def __init__(self, checkpoint_path: str | Path) -> None:
        super().__init__(name="vggish")
        path = Path(checkpoint_path)
        validate_checkpoint(path)
        self.status = checkpoint_status(path)
        self._embed = tf.compat.v1.wrap_function(slim_model.define_vggish, [EXAMPLES_SPEC])
        try:
            reader = tf.train.load_checkpoint(str(path))
            for variable in self._embed.variables:
                variable.assign(reader.get_tensor(variable.name.split(":")[0]))
        except tf.errors.OpError as exc:
            raise CheckpointError(
                path, f"the weights could not be read: corrupt or truncated file ({type(exc).__name__})"
            ) from exc
        self.weights = list(self._embed.variables)  # tracked, so that a SavedModel stores them
        logger.info("VGGish weights (%s) read from %s", self.status, path)

    def __call__(self, examples: tf.Tensor) -> tf.Tensor:
        return self._embed(examples)
