"""The `audiotag` command line: its parser, train + evaluate on extracted features, info, and one-line user
errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


@pytest.fixture(scope="module")
def labelled_features(
    synthetic_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """`audiotag extract` (npz) of 16 generated 2-s clips — 8 low hums, 8 noise bursts — and the clips' folder
    (with labels.csv: ids are paths relative to the folder given to extract, e.g. `hum/3.wav`)."""
    root = tmp_path_factory.mktemp("train_clips")
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    rows = ["id,labels"]
    (root / "hum").mkdir()
    (root / "noise").mkdir()
    for i in range(8):
        sf.write(root / "hum" / f"{i}.wav", 0.3 * np.sin(2 * np.pi * (100 + 10 * i) * t), 16000)
        bursts = 0.3 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2 * t) > 0)
        sf.write(root / "noise" / f"{i}.wav", bursts, 16000)
        rows += [f'hum/{i}.wav,"hum,tonal"', f"noise/{i}.wav,noise"]
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    out = tmp_path_factory.mktemp("features")
    args = ["extract", str(root), "-o", str(out), "--format", "npz", "--no-progress"]
    code = main(["--vggish-checkpoint", str(synthetic_checkpoint), *args])
    assert code == EXIT_OK, (out / "errors.tsv").read_text()
    return out, root


@pytest.mark.slow
def test_train_then_evaluate_on_extracted_features(
    labelled_features: tuple[Path, Path], tmp_path: Path, synthetic_checkpoint: Path, capsys
) -> None:
    features, clips = labelled_features
    labels = clips / "labels.csv"
    run = tmp_path / "run"
    # In a subprocess: classifier.train enables TensorFlow's op determinism for the whole process.
    options = (
        "--model single_attention --iterations 20 --batch-size 8 --hidden-units 16 --num-layers 1 "
        "--eval-every 10 --checkpoint-every 10 --holdout-fraction 0.25 --snapshots 1 --no-progress"
    )
    result = _run("train", str(features), "--labels", str(labels), "-o", str(run), *options.split())
    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert Path(summary["head"]) == run / "head.npz" and (run / "head.npz").is_file()
    assert 0.0 <= summary["mAP"] <= 1.0 and summary["classes_used"] >= 1
    report = tmp_path / "report"
    code = main(
        [
            "evaluate",
            str(features),
            "--labels",
            str(labels),
            "--head",
            str(run / "head.npz"),
            "-o",
            str(report),
        ]
    )
    captured = capsys.readouterr()
    assert captured.out.startswith("{"), captured.err[-2000:]
    evaluation = json.loads(captured.out)
    assert code == EXIT_OK
    assert evaluation["clips"] == 16 and evaluation["classes_used"] == 3  # hum, noise, tonal
    assert 0.0 <= evaluation["mAP"] <= 1.0
    assert json.loads((report / "summary.json").read_text())
    assert (report / "per_class.csv").is_file()
    # The retrained head tags files with its own classes.
    hum = clips / "hum" / "0.wav"
    head = str(run / "head.npz")
    checkpoint = str(synthetic_checkpoint)
    code = main(["--vggish-checkpoint", checkpoint, "tag", str(hum), "--head", head, "--format", "json"])
    captured = capsys.readouterr()
    assert captured.out.startswith("["), captured.err[-3000:]
    tagged = json.loads(captured.out)
    assert code == EXIT_OK
    assert {label["name"] for label in tagged[0]["labels"]} == {"hum", "noise", "tonal"}
    assert {label["mid"] for label in tagged[0]["labels"]} == {"hum", "noise", "tonal"}


@pytest.mark.slow
def test_info_reports_the_checkpoint_status(
    synthetic_checkpoint: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["--vggish-checkpoint", str(synthetic_checkpoint), "info"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "checkpoint status:     synthetic" in out and "SYNTHETIC" in out
    assert "tensorflow" in out and "numpy" in out
    heads_line = next(line for line in out.splitlines() if line.startswith("classifier heads:"))
    assert "audioset (" in heads_line and "MODEL_CARD" not in heads_line
    monkeypatch.setenv("AUDIOTAG_HOME", str(tmp_path))
    monkeypatch.delenv("AUDIOTAG_VGGISH_CHECKPOINT", raising=False)
    assert main(["info"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "checkpoint status:     missing" in out and str(tmp_path) in out


@pytest.mark.slow
def test_user_errors_are_one_line_without_traceback(tmp_path: Path, capsys) -> None:
    corrupt = tmp_path / "vggish_model.ckpt"
    corrupt.write_bytes(b"\x00" * 1000)
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(16000), 16000)
    code = main(["--vggish-checkpoint", str(corrupt), "extract", str(audio), "-o", str(tmp_path / "o")])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("audiotag: error:") and str(corrupt) in err
    assert (
        main(["evaluate", str(tmp_path), "--head", str(tmp_path / "nohead.npz"), "-o", str(tmp_path / "r")])
        == EXIT_ERROR
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nohead.npz" in err
    labels = tmp_path / "labels.csv"
    labels.write_text('id,labels\na.wav,"Dog,Not a class"\n')
    assert main(["extract", str(audio), "-o", str(tmp_path / "o"), "--labels", str(labels)]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(labels) in err and "Not a class" in err and "--labels" in err


def test_python_dash_m_pipeline_and_usage_errors(tmp_path: Path) -> None:
    result = _run("--help")
    assert result.returncode == 0 and "extract" in result.stdout and "download-models" in result.stdout
    result = _run("extract", str(tmp_path))  # -o missing
    assert result.returncode == EXIT_USAGE and "Traceback" not in result.stderr
    missing = tmp_path / "missing.ckpt"
    result = _run("--vggish-checkpoint", str(missing), "tag", str(tmp_path / "a.wav"))
    assert result.returncode == EXIT_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("audiotag:")]
    assert len(lines) == 1 and "missing.ckpt" in lines[0]


def test_building_the_parser_imports_neither_tensorflow_nor_beam() -> None:
    code = (
        "import sys\nfrom pipeline.cli import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in ('tensorflow', 'apache_beam') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tag", "a.wav", "--top-k", "0"], "argument --top-k: must be at least 1: 0"),
        (["extract", "in", "-o", "out", "--workers", "x"], "argument --workers: not an integer: 'x'"),
        (["beam-tag", "in", "-o", "out", "--segment-seconds", "1"],
         "argument --segment-seconds: must be at least 1.92 (two patches): 1"),
        (["beam-extract", "in", "-o", "out", "--segment-seconds", "x"],
         "argument --segment-seconds: not a number: 'x'"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == EXIT_USAGE and message in capsys.readouterr().err


def test_commands_in_order_each_with_the_global_options() -> None:
    from pipeline.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert list(commands) == ["tag", "listen", "extract", "beam-extract", "beam-tag", "train", "evaluate",
                              "pack-features", "export", "download-models", "info"]
    for name, command in commands.items():
        options = {option for action in command._actions for option in action.option_strings}
        assert {"--vggish-checkpoint", "-v"} <= options, name
        assert (command.epilog is not None) == name.startswith("beam-"), name  # Beam's own options


def test_download_models_reports_a_failed_download_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    import vggish.download

    def unreachable(dest=None, **kwargs):
        raise vggish.download.DownloadError("network unreachable: [Errno 101]", dest=dest)

    monkeypatch.setattr(vggish.download, "download_checkpoint", unreachable)
    assert main(["download-models", "--dest", str(tmp_path / "ckpt")]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "network unreachable" in err
    assert "https://storage.googleapis.com/audioset/vggish_model.ckpt" in err and "--vggish-checkpoint" in err


def test_train_options_map_onto_train_config_fields() -> None:
    from dataclasses import fields

    from classifier.train import TrainConfig
    from pipeline.cli import build_parser
    from pipeline.training import _overrides

    args = build_parser().parse_args(
        ["train", "features", "-o", "run", "--label-smoothing", "0.1", "--mixup-alpha", "0.3", "--seed", "2",
         "--folds", "5", "--fold", "3", "--attention", "softmax"]
    )
    overrides = _overrides(args)
    assert overrides["label_smoothing"] == 0.1 and overrides["mixup_alpha"] == 0.3 and overrides["seed"] == 2
    assert (overrides["folds"], overrides["fold"]) == (5, 3)
    assert TrainConfig(**overrides).model_config(527)["attention"] == "softmax"
    assert set(overrides) <= {f.name for f in fields(TrainConfig)}
    assert "kind" not in overrides  # options left out keep TrainConfig's defaults


def test_transformer_options_map_onto_train_config_fields() -> None:
    from classifier.train import TrainConfig
    from pipeline.cli import build_parser
    from pipeline.training import _overrides

    args = build_parser().parse_args(["train", "features", "-o", "run", "--model", "transformer",
                                      "--num-heads", "4", "--transformer-layers", "2"])
    overrides = _overrides(args)
    assert {k: overrides[k] for k in ("kind", "num_heads", "transformer_layers")} == {
        "kind": "transformer", "num_heads": 4, "transformer_layers": 2}
    member = TrainConfig(**overrides).model_config(527)
    assert (member["kind"], member["num_heads"], member["transformer_layers"]) == ("transformer", 4, 2)
