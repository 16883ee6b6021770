"""The VGGish CNN on LiteRT: the checkpoint's cached conversion (vggish.lite_cache), memory-mapped and run by
LiteRT's interpreter with its XNNPACK kernels. Never imports TensorFlow once the conversion is cached.

The front end and the PCA are the numpy ones that vggish.VGGish uses (vggish.embedder.Embedder), so the two
engines differ only by the CNN's float32 arithmetic (figures: docs, "The VGGish front end").
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vggish import lite_cache, params
from vggish.embedder import Embedder
from vggish.errors import CheckpointError, LiteEngineError

logger = logging.getLogger(__name__)

# What LiteRT's C++ code writes to stderr when its first interpreter gets XNNPACK: noise on every command.
DELEGATE_NOTICE = b"Created TensorFlow Lite XNNPACK delegate"


@contextlib.contextmanager
def _without_delegate_notice() -> Iterator[None]:
    """Run the block with file descriptor 2 captured, then pass on what it got except DELEGATE_NOTICE's
    line (Python's own stderr output included, so nothing else is lost; it is only delayed)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured.read().splitlines(keepends=True)
                            if DELEGATE_NOTICE not in line)
            if kept:
                os.write(2, kept)


def _interpreter(conversion: lite_cache.Conversion, threads: int):
    """A LiteRT interpreter of the conversion: memory-mapped from its file, else from its bytes."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise LiteEngineError(f"LiteRT is not installed ({exc}); pip install ai-edge-litert") from None
    if conversion.path is None:
        return Interpreter(model_content=conversion.content, num_threads=threads)
    return Interpreter(model_path=str(conversion.path), num_threads=threads)


class LiteVGGish(Embedder):
    """VGGish from the LiteRT conversion of `checkpoint_path`, converted and cached on first use (a line on
    stderr while it builds, with `progress`), plus PCA postprocessing.

    threads: the interpreter's threads (None: one per core). A cached conversion that LiteRT cannot load is
    built again once. Raises CheckpointError for a bad checkpoint, LiteEngineError when LiteRT is missing
    or the conversion fails, OSError naming a cached file that cannot be read. Not thread-safe: one
    caller at a time.
    """

    engine = "lite"

    def __init__(self, checkpoint_path: str | Path, pca_params_path: str | Path | None = None, *,
                 threads: int | None = None, progress: bool = True) -> None:
        checkpoint_path = Path(checkpoint_path)
        threads = threads or os.cpu_count() or 1
        conversion = _converted(checkpoint_path, lite_cache.NOT_BUILT, progress)
        try:
            interpreter = _interpreter(conversion, threads)
        except (ValueError, RuntimeError) as exc:
            if conversion.path is None:
                raise LiteEngineError(f"LiteRT cannot load the VGGish conversion ({exc})") from exc
            reason = f"{conversion.path} is corrupt: LiteRT cannot load it ({exc})"
            conversion = _converted(checkpoint_path, reason, progress)
            try:
                interpreter = _interpreter(conversion, threads)
            except (ValueError, RuntimeError) as again:
                raise LiteEngineError(f"{conversion.path}: LiteRT cannot load the VGGish conversion "
                                      f"({again})") from again
        super().__init__(checkpoint_path, pca_params_path, synthetic_weights=conversion.synthetic)
        self.conversion_path = conversion.path
        self._interpreter = interpreter
        self._input = interpreter.get_input_details()[0]["index"]
        self._output = interpreter.get_output_details()[0]["index"]
        self._batch = 0  # the batch size the tensors are allocated for
        logger.info("loaded VGGish on LiteRT%s from %s (%d threads)",
                    " (SYNTHETIC weights)" if self.synthetic else "", conversion.path or "memory", threads)

    def _embed_batch(self, examples: np.ndarray) -> np.ndarray:
        if self._interpreter is None:
            raise RuntimeError("this LiteVGGish is closed")
        if len(examples) != self._batch:
            self._interpreter.resize_tensor_input(self._input, [len(examples), params.NUM_FRAMES,
                                                                params.NUM_BANDS])
            # The first allocation applies XNNPACK (packing the weights, ~0.2 s), which LiteRT announces.
            with _without_delegate_notice() if not self._batch else contextlib.nullcontext():
                self._interpreter.allocate_tensors()
            self._batch = len(examples)
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(examples, np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)

    def close(self) -> None:
        """Release the interpreter and its mapping of the flatbuffer (idempotent)."""
        self._interpreter = None


def _converted(checkpoint: Path, reason: str, progress: bool) -> lite_cache.Conversion:
    """The usable conversion (reason NOT_BUILT), or one built again for `reason`; a failed conversion as
    LiteEngineError (a bad checkpoint stays a CheckpointError, an unreadable file an OSError)."""
    try:
        if reason == lite_cache.NOT_BUILT:
            return lite_cache.ensure(checkpoint, progress=progress)
        return lite_cache.build(checkpoint, reason, progress=progress)
    except (CheckpointError, OSError):
        raise
    except Exception as exc:  # the converter's own errors (ConverterError, RuntimeError, ...) and ImportError
        raise LiteEngineError(f"the LiteRT conversion of {checkpoint} failed: {type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:300]}") from exc
