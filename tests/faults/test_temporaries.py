"""The temporaries (`.NAME.PID.part`) that killed runs leave beside plots, HTML pages and evaluation reports:
the next run that writes into the folder deletes them, and never those of a live process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import main

from .helpers import run_cli, write_features, write_tones

pytestmark = pytest.mark.faults


def _plant(folder: Path) -> tuple[Path, Path]:
    """A dead process's temporary and a live one's (this process's) in folder; returns (dead, live)."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    folder.mkdir(parents=True, exist_ok=True)
    dead = folder / f".x.png.{finished.pid}.part"
    live = folder / f".x.png.{os.getpid()}.part"
    for path in (dead, live):
        path.write_bytes(b"partial")
    return dead, live


@pytest.mark.slow
def test_tag_deletes_dead_temporaries_beside_its_plot_and_page(synthetic_checkpoint: Path,
                                                               tmp_path: Path) -> None:
    [clip] = write_tones(tmp_path / "in", 1)
    plots, pages = tmp_path / "plots", tmp_path / "pages"
    planted = [_plant(plots), _plant(pages)]
    code = run_cli(synthetic_checkpoint, "tag", str(tmp_path / "in" / clip), "--plot", str(plots / "t.png"),
                   "--html", str(pages / "t.html"))
    assert code == 0
    assert (plots / "t.png").is_file() and (pages / "t.html").is_file()
    for dead, live in planted:
        assert not dead.exists() and live.exists()


def test_evaluate_deletes_dead_temporaries_in_its_report_folder(tmp_path: Path) -> None:
    features = tmp_path / "feats"
    clip_ids = write_features(features, 4)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,labels\n" + "".join(f"{clip_id},{'Dog' if i % 2 else 'Speech'}\n"
                                              for i, clip_id in enumerate(clip_ids)))
    report = tmp_path / "report"
    dead, live = _plant(report)
    assert main(["evaluate", str(features), "--labels", str(labels), "-o", str(report)]) == 0
    assert (report / "summary.json").is_file()
    assert not dead.exists() and live.exists()
