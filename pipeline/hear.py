"""HEAR 2021 common API over VGGish (https://hearbenchmark.com, "common API").

    model = load_model()                                  # or load_model("/path/to/vggish_model.ckpt")
    scene = get_scene_embeddings(audio, model)            # [n_sounds, 128]
    emb, ts = get_timestamp_embeddings(audio, model)      # [n_sounds, T, 128], [n_sounds, T] (ms)

`audio` is mono float audio in [-1, 1] at `model.sample_rate` (16 kHz), shape [n_sounds, n_samples], as a
numpy array or a TensorFlow tensor. Timestamp embeddings are the raw (pre-PCA) 128-d VGGish embeddings of
0.96 s patches with a hop of `model.hop_seconds` (default 0.96 s); timestamps are in milliseconds at the
centre of each patch. Sounds shorter than one patch are zero-padded to one patch. The scene embedding is
the mean of the timestamp embeddings. Outputs are float32 numpy arrays. The CNN runs on LiteRT by default
(`load_model(vggish_engine=...)` chooses).
"""

from __future__ import annotations

from typing import Any

import numpy as np

PATCH_SECONDS = 0.96


class HearModel:
    """A loaded VGGish (a vggish.Embedder: `vggish`) with the attributes the HEAR API requires."""

    sample_rate = 16000
    scene_embedding_size = 128
    timestamp_embedding_size = 128

    def __init__(self, vggish_model: Any, hop_seconds: float = 0.96):
        self.vggish = vggish_model
        self.hop_seconds = hop_seconds


def load_model(model_file_path: str = "", *, hop_seconds: float = 0.96,
               vggish_engine: str = "auto") -> HearModel:
    """Load VGGish once; an empty path resolves the checkpoint (env variable, cache, download).
    vggish_engine: "auto" (LiteRT on the checkpoint's cached conversion when it can, else TensorFlow),
    "lite" or "tf" (vggish.engines.load_embedder)."""
    from vggish.download import resolve_checkpoint
    from vggish.engines import load_embedder

    checkpoint = resolve_checkpoint(model_file_path or None)
    return HearModel(load_embedder(checkpoint, vggish_engine), hop_seconds=hop_seconds)


def _as_numpy(audio: Any) -> np.ndarray:
    array = np.asarray(audio.numpy() if hasattr(audio, "numpy") else audio, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"audio must be [n_sounds, n_samples], got shape {array.shape}")
    return array


def get_timestamp_embeddings(audio: Any, model: HearModel) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings float32 [n_sounds, T, 128] and timestamps float32 [n_sounds, T] (ms, patch centres)."""
    import vggish

    sounds = _as_numpy(audio)
    examples = [
        vggish.waveform_to_examples(s, model.sample_rate, hop_seconds=model.hop_seconds) for s in sounds
    ]
    counts = {len(e) for e in examples}
    if len(counts) > 1:
        raise ValueError("all sounds in a batch must have the same length")
    count = counts.pop() if counts else 0
    if not examples:
        return np.zeros((0, 0, 128), np.float32), np.zeros((0, 0), np.float32)
    raw = model.vggish.embed(np.concatenate(examples))
    embeddings = raw.reshape(len(sounds), count, -1).astype(np.float32)
    starts = np.asarray(vggish.example_start_times(count, hop_seconds=model.hop_seconds), np.float64)
    centres_ms = ((starts + PATCH_SECONDS / 2) * 1000.0).astype(np.float32)
    return embeddings, np.tile(centres_ms, (len(sounds), 1))


def get_scene_embeddings(audio: Any, model: HearModel) -> np.ndarray:
    """One embedding per sound, float32 [n_sounds, 128]: the mean over its timestamp embeddings."""
    embeddings, _ = get_timestamp_embeddings(audio, model)
    if embeddings.shape[1] == 0:
        return np.zeros((embeddings.shape[0], HearModel.scene_embedding_size), np.float32)
    return embeddings.mean(axis=1)


__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]
