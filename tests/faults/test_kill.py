"""SIGKILL at every phase of a run that writes outputs (tests/faults/killer.py picks the moment): the folder
stays valid (nothing half-written where a reader looks, the lock free) and the rerun completes every clip
exactly once. SIGKILL while the HDF5 parts are written: tests/test_pipeline_extract.py."""

from __future__ import annotations

import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.cli import EXIT_OK

from .helpers import cli_process, run_cli, write_features, write_tones

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def _killed(checkpoint: Path, moment: str, *args: str) -> None:
    process = cli_process("--vggish-checkpoint", str(checkpoint), *args, kill_at=moment)
    _, err = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, err


@pytest.mark.parametrize("moment", ["during-merge", "after-merge", "before-rename:part-:2"])
def test_hdf5_run_killed_then_rerun(moment: str, synthetic_checkpoint: Path, tmp_path: Path, capsys) -> None:
    clip_ids = write_tones(tmp_path / "in", 6)
    out = tmp_path / "out"
    args = ["extract", str(tmp_path / "in"), "-o", str(out), "--format", "hdf5", "--batch-size", "2",
            "--workers", "1", "--no-progress"]
    _killed(synthetic_checkpoint, moment, *args)
    if (out / "embeddings.h5").exists():  # only ever complete
        with h5py.File(out / "embeddings.h5", "r") as f:
            assert sorted(f["video_id"].asstr()[()]) == clip_ids
    assert run_cli(synthetic_checkpoint, *args) == EXIT_OK
    with h5py.File(out / "embeddings.h5", "r") as f:
        assert sorted(f["video_id"].asstr()[()]) == clip_ids  # each exactly once
        assert np.diff(f["clip_offsets"][()]).tolist() == [1] * 6
    assert not list(out.rglob("*.part")) and not list((out / ".audiotag" / "parts").iterdir())


def test_npz_run_killed_with_a_complete_temporary_then_rerun(synthetic_checkpoint: Path, tmp_path: Path,
                                                             capsys) -> None:
    clip_ids = write_tones(tmp_path / "in", 4)
    out = tmp_path / "out"
    args = ["extract", str(tmp_path / "in"), "-o", str(out), "--format", "npz", "--workers", "1",
            "--no-progress"]
    _killed(synthetic_checkpoint, "before-rename:t2.wav:1", *args)
    assert len(list(out.glob(".t2.wav.npz.*.part"))) == 1 and not (out / "t2.wav.npz").exists()
    assert run_cli(synthetic_checkpoint, *args) == EXIT_OK
    assert "2 already done" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.npz")) == [f"{clip_id}.npz" for clip_id in clip_ids]
    assert not list(out.glob(".*.part"))  # the dead run's temporary was removed


def test_training_killed_while_saving_its_checkpoint_resumes(tmp_path: Path, capsys) -> None:
    """The run folder's lock dies with the run; the rerun resumes from the last complete checkpoint."""
    from pipeline.cli import main

    features = tmp_path / "feats"
    clip_ids = write_features(features, 12)
    rows = ["id,labels", *(f"{clip_id},{'a' if i % 2 else 'b'}" for i, clip_id in enumerate(clip_ids))]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    args = ["train", str(features), "--labels", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "run"),
            "--hidden-units", "8", "--iterations", "6", "--eval-every", "2", "--checkpoint-every", "2",
            "--batch-size", "8", "--no-progress"]
    process = cli_process(*args, kill_at="before-rename:checkpoint.npz:2")
    _, err = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, err
    assert (tmp_path / "run" / "checkpoint.npz").is_file() and not (tmp_path / "run" / "head.npz").exists()
    assert main(args) == EXIT_OK
    assert (tmp_path / "run" / "head.npz").is_file()
    assert not list((tmp_path / "run").rglob("*.part"))
