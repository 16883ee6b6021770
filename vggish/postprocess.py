"""PCA whitening and 8-bit quantization of raw VGGish embeddings, exactly as Google's vggish_postprocess.

quantized = uint8(truncate((clip(E (x - mu), -2, 2) + 2) * 255 / 4)) where E is the 128x128
eigenvector matrix and mu the 128 means of the released vggish_pca_params.npz (float64 arithmetic).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from audiotag_data import data_dir
from vggish import params
from vggish.errors import PCAParamsError
from vggish.hashing import sha256_file

logger = logging.getLogger(__name__)


def default_pca_params_path() -> Path:
    """The vendored release PCA parameters: data_dir() / vggish_pca_params.npz."""
    return data_dir() / params.PCA_PARAMS_FILENAME


class Postprocessor:
    """Loads PCA parameters once (default: the vendored release file, sha256-checked) and applies them."""

    def __init__(self, pca_params_path: str | Path | None = None) -> None:
        path = Path(pca_params_path) if pca_params_path is not None else default_pca_params_path()
        if not path.is_file():
            raise PCAParamsError(path, "file not found")
        if sha256_file(path) != params.PCA_PARAMS_SHA256:
            if pca_params_path is None:
                raise PCAParamsError(path, "sha256 does not match the released vggish_pca_params.npz")
            logger.warning("%s is not the released VGGish PCA parameters file (sha256 differs)", path)
        try:
            with np.load(path) as archive:
                eigen_vectors = np.asarray(archive[params.PCA_EIGEN_VECTORS_NAME], dtype=np.float64)
                means = np.asarray(archive[params.PCA_MEANS_NAME], dtype=np.float64).reshape(-1)
        except (OSError, ValueError, KeyError) as exc:
            raise PCAParamsError(path, f"cannot read the PCA arrays ({exc})") from exc
        size = params.EMBEDDING_SIZE
        if eigen_vectors.shape != (size, size) or means.shape != (size,):
            raise PCAParamsError(
                path, f"expected eigenvectors {(size, size)} and means {(size,)}, got "
                f"{eigen_vectors.shape} and {means.shape}"
            )
        self.path = path
        self.eigen_vectors = eigen_vectors  # float64 [128, 128], one eigenvector per row
        self.means = means  # float64 [128]

    def postprocess(self, embeddings: np.ndarray) -> np.ndarray:
        """Raw embeddings float [N, 128] -> whitened, quantized uint8 [N, 128]."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != params.EMBEDDING_SIZE:
            expected = f"[N, {params.EMBEDDING_SIZE}]"
            raise ValueError(f"expected embeddings of shape {expected}, got {embeddings.shape}")
        projected = (self.eigen_vectors @ (embeddings.T - self.means[:, None])).T
        clipped = np.clip(projected, params.QUANTIZE_MIN_VAL, params.QUANTIZE_MAX_VAL)
        scale = 255.0 / (params.QUANTIZE_MAX_VAL - params.QUANTIZE_MIN_VAL)
        return ((clipped - params.QUANTIZE_MIN_VAL) * scale).astype(np.uint8)
