"""The VGGish CNN of a checkpoint converted to a LiteRT (TF-Lite) flatbuffer. Imports TensorFlow.

The network is vggish.tf_function.VGGishFunction (the TF-Slim graph of vggish.slim_model with the
checkpoint's weights), converted as `audiotag export` converts its graph: built-in ops only, float32, no
quantization. The flatbuffer has one signature, params.LITE_INPUT_NAME float32 [N, 96, 64] ->
params.LITE_OUTPUT_NAME float32 [N, 128] (raw embeddings), with any N. The front end and the PCA stay numpy
(vggish.input, vggish.postprocess), so both engines share them.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from vggish import params
from vggish.tf_function import VGGishFunction

EXAMPLES_SPEC = tf.TensorSpec((None, params.NUM_FRAMES, params.NUM_BANDS), tf.float32,
                              name=params.LITE_INPUT_NAME)


def convert_checkpoint(checkpoint_path: str | Path) -> bytes:
    """The checkpoint's CNN as a float32 TF-Lite flatbuffer (see the module's docstring). Raises
    CheckpointError for a missing, corrupt or wrong-layout checkpoint."""
    model = VGGishFunction(checkpoint_path)

    def embed(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return {params.LITE_OUTPUT_NAME: model(examples)}

    function = tf.function(embed, input_signature=[EXAMPLES_SPEC]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()
