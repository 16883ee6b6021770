"""Named constants of the VGGish front end, the CNN and its released artefacts.

Values follow Google's reference (tensorflow/models, research/audioset/vggish/vggish_params.py);
units are in the names or the comments.
"""

from __future__ import annotations

# Architecture.
NUM_FRAMES = 96  # log-mel frames per example (0.96 s at a 10 ms hop)
NUM_BANDS = 64  # mel bands per frame
EMBEDDING_SIZE = 128  # width of the embedding layer

# Audio and log-mel front end.
SAMPLE_RATE = 16000  # Hz
STFT_WINDOW_LENGTH_SECONDS = 0.025
STFT_HOP_LENGTH_SECONDS = 0.010
FFT_LENGTH = 512  # samples: 2 ** ceil(log2(0.025 s * 16 kHz))
NUM_MEL_BINS = NUM_BANDS
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01  # added to the mel spectrogram before the log, to avoid log(0)
EXAMPLE_WINDOW_SECONDS = 0.96  # each example spans 96 frames of 10 ms
EXAMPLE_HOP_SECONDS = 0.96  # default hop between examples: no overlap

# PCA whitening and 8-bit quantization of the embeddings.
PCA_EIGEN_VECTORS_NAME = "pca_eigen_vectors"
PCA_MEANS_NAME = "pca_means"
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = +2.0

# Hyperparameters used when the network was trained (kept for fidelity with the reference graph).
INIT_STDDEV = 0.01  # standard deviation of the reference's truncated-normal initializer
LEARNING_RATE = 1e-4
ADAM_EPSILON = 1e-8

# Names of the operations and tensors that feed and read the graph.
INPUT_OP_NAME = "vggish/input_features"
INPUT_TENSOR_NAME = INPUT_OP_NAME + ":0"
OUTPUT_OP_NAME = "vggish/embedding"
OUTPUT_TENSOR_NAME = OUTPUT_OP_NAME + ":0"
AUDIO_EMBEDDING_FEATURE_NAME = "audio_embedding"

# The released artefacts.
CHECKPOINT_URL = "https://storage.googleapis.com/audioset/vggish_model.ckpt"
CHECKPOINT_FILENAME = "vggish_model.ckpt"
CHECKPOINT_SIZE_BYTES = 291_108_469
CHECKPOINT_SHA256 = "0962b1914e3e053922d957c45bc84a78c985765641dc6bceeeb3a7d8dfecfdf6"
PCA_PARAMS_URL = "https://storage.googleapis.com/audioset/vggish_pca_params.npz"
PCA_PARAMS_FILENAME = "vggish_pca_params.npz"
PCA_PARAMS_SIZE_BYTES = 73_020
PCA_PARAMS_SHA256 = "4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d"

# Cost of one forward pass over one 96x64 example, for throughput figures (GFLOP, multiply-adds x 2).
GFLOP_PER_EXAMPLE = 1.73

# The engines that run the CNN (vggish.engines.load_embedder): "tf" restores the checkpoint into TensorFlow;
# "lite" runs its LiteRT conversion (cached, see vggish.lite_cache); "auto" picks lite when it can.
ENGINES = ("auto", "lite", "tf")
DEFAULT_ENGINE = "auto"

# The cached LiteRT conversion of a checkpoint (vggish.lite_cache). Bump LITE_FORMAT whenever the converted
# graph or its signature changes: conversions of another format are rebuilt.
LITE_FORMAT = 1
LITE_SUFFIX = ".litert.tflite"  # the flatbuffer: <checkpoint>.litert.tflite
LITE_RECORD_SUFFIX = ".litert.json"  # its sidecar: format, checkpoint sha256, size, synthetic
HASH_RECORD_SUFFIX = ".sha256.json"  # the checkpoint's (size, mtime_ns, sha256), so it is hashed once
LITE_CACHE_SUBDIR = "vggish-litert"  # in safeio.cache.cache_dir(), when the checkpoint's folder is read-only
LITE_INPUT_NAME = "examples"  # signature input: float32 [N, 96, 64]
LITE_OUTPUT_NAME = "embedding"  # signature output: float32 [N, 128]
TFLITE_IDENTIFIER = b"TFL3"  # bytes 4-8 of every TF-Lite flatbuffer
LITE_CONVERT_SECONDS = 30  # typical time of one conversion on two cores (TensorFlow import included), s
