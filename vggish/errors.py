"""Exceptions raised for problems a user can cause: bad audio files and bad checkpoints."""

from __future__ import annotations

from pathlib import Path


class AudioFileError(Exception):
    """An audio file is missing, unreadable, corrupt, empty, not audio, or has no channels."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


CHECKPOINT_REMEDY = (
    "use the released vggish_model.ckpt (`audiotag download-models` fetches and verifies it; or download it "
    "by hand and pass --vggish-checkpoint PATH)"
)


class CheckpointError(Exception):
    """A VGGish checkpoint is missing, truncated, corrupt, or does not have the released layout."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"VGGish checkpoint {self.path}: {problem}; {CHECKPOINT_REMEDY}")


class PCAParamsError(Exception):
    """The PCA parameters file is missing, unreadable, altered, or has the wrong shapes."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"PCA parameters {self.path}: {problem}")


class LiteEngineError(Exception):
    """The LiteRT engine cannot run VGGish here: LiteRT is not installed, or the conversion failed or cannot
    be loaded (vggish.engines.load_embedder's "auto" then falls back to TensorFlow)."""
