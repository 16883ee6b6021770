"""Fixtures shared by the whole suite: the real data in ../shared and a synthetic VGGish checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The real data beside the repository; tests that need it skip when it is absent."""
    if not (SHARED_DIR / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DIR} (only present in the development checkout and CI)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def shared_audio(shared_dir: Path) -> Path:
    """Folder of real recordings (see ../shared/README.md)."""
    return shared_dir / "audio"


@pytest.fixture(scope="session")
def audioset_dir(shared_dir: Path) -> Path:
    """The official AudioSet embedding release (bal_train/, eval/, unbal_train/)."""
    return shared_dir / "data" / "audioset_v1_embeddings"


@pytest.fixture(scope="session")
def synthetic_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SYNTHETIC VGGish checkpoint (seeded random weights in the released layout), written once per run.

    It is not the released model: numbers computed with it only test plumbing, never accuracy.
    """
    from vggish.synthetic import write_synthetic_checkpoint

    path = tmp_path_factory.mktemp("synthetic_vggish") / "vggish_synthetic.ckpt"
    write_synthetic_checkpoint(path, seed=0)
    return path


@pytest.fixture(scope="session")
def synthetic_lite_checkpoint(synthetic_checkpoint: Path) -> Path:
    """The synthetic checkpoint with its LiteRT conversion built beside it, once per run (every later use of
    the checkpoint, in this process or in a `audiotag` subprocess, finds the conversion cached)."""
    from vggish import lite_cache

    lite_cache.ensure(synthetic_checkpoint, progress=False)
    return synthetic_checkpoint


@pytest.fixture(scope="session")
def real_checkpoint() -> Path:
    """The released checkpoint, when AUDIOTAG_VGGISH_CHECKPOINT points at it; skips otherwise."""
    value = os.environ.get("AUDIOTAG_VGGISH_CHECKPOINT")
    if not value or not Path(value).is_file():
        pytest.skip(
            "the released VGGish checkpoint is not available here: set AUDIOTAG_VGGISH_CHECKPOINT to a "
            "downloaded vggish_model.ckpt (audiotag download-models) to run this test"
        )
    return Path(value)
