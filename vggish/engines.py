"""Choosing and loading the engine that runs the VGGish CNN: "tf" (vggish.model.VGGish, TensorFlow) or
"lite" (vggish.lite_model.LiteVGGish, LiteRT on the checkpoint's cached conversion); "auto" (the default)
takes lite when LiteRT is installed and the conversion is cached or can be built, else tf with a warning
saying why. Both give an vggish.embedder.Embedder. Importing this module imports neither TensorFlow nor
LiteRT.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from vggish import params
from vggish.embedder import Embedder
from vggish.errors import LiteEngineError

logger = logging.getLogger(__name__)

LITERT_MODULE = "ai_edge_litert"


def check_engine(engine: str) -> str:
    """`engine` if it is one of params.ENGINES, else ValueError naming the choices."""
    if engine not in params.ENGINES:
        raise ValueError(f"vggish_engine must be one of {params.ENGINES}, got {engine!r}")
    return engine


def litert_missing() -> str:
    """Why LiteRT cannot be used here ("" when it is installed)."""
    if importlib.util.find_spec(LITERT_MODULE) is None:
        return "LiteRT is not installed (pip install ai-edge-litert)"
    return ""


def auto_engine() -> tuple[str, str]:
    """What "auto" picks, without building anything: ("lite", "") whenever LiteRT is installed (a missing or
    stale conversion is built on first use), else ("tf", why not lite)."""
    why = litert_missing()
    return ("tf", why) if why else ("lite", "")


def load_embedder(checkpoint: str | Path, engine: str = params.DEFAULT_ENGINE,
                  pca_params_path: str | Path | None = None, *, intra_op_threads: int | None = None,
                  inter_op_threads: int | None = None, progress: bool = True) -> Embedder:
    """VGGish on `engine` ("auto", "lite" or "tf"; see the module's docstring).

    intra_op_threads: the CNN's threads (TensorFlow's intra-op pool, or LiteRT's interpreter threads);
    inter_op_threads: TensorFlow's inter-op pool (unused by LiteRT). progress: a line on stderr while a
    conversion is built. Raises CheckpointError for a bad checkpoint; LiteEngineError when "lite" cannot
    be used.
    """
    check_engine(engine)
    if engine != "tf":
        try:
            if why := litert_missing():
                raise LiteEngineError(why)
            from vggish.lite_model import LiteVGGish

            return LiteVGGish(checkpoint, pca_params_path, threads=intra_op_threads, progress=progress)
        except LiteEngineError as exc:
            if engine == "lite":
                raise
            logger.warning("VGGish runs on TensorFlow, not LiteRT: %s", exc)
    from vggish.model import VGGish

    return VGGish(checkpoint, pca_params_path, intra_op_threads=intra_op_threads,
                  inter_op_threads=inter_op_threads)
