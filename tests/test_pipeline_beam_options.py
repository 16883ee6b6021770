"""beam-extract's command line, runner choice, inputs and output naming (fast: no pipeline runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import EXIT_USAGE, build_parser, main

pytest.importorskip("apache_beam")


def test_unknown_options_go_to_beam_only_for_beam_commands(tmp_path: Path, capsys) -> None:
    parser = build_parser()
    args, unknown = parser.parse_known_args(
        ["beam-extract", "in/", "-o", "out", "--runner=DataflowRunner", "--project=p", "--num-shards", "4"])
    assert args.inputs == ["in/"] and args.num_shards == 4
    assert unknown == ["--runner=DataflowRunner", "--project=p"]
    with pytest.raises(SystemExit) as info:
        main(["extract", str(tmp_path), "-o", str(tmp_path / "o"), "--runner=DataflowRunner"])
    assert info.value.code == EXIT_USAGE
    assert "unrecognized arguments: --runner=DataflowRunner" in capsys.readouterr().err


def test_local_runner_is_the_multi_process_fn_api_runner() -> None:
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipeline.beam.extract import cnn_threads_for, make_pipeline_options
    from pipeline.extract import available_cores

    options, runner, workers = make_pipeline_options([])
    direct = options.view_as(DirectOptions)
    assert isinstance(runner, FnApiRunner) and workers == available_cores()
    assert (direct.direct_running_mode, direct.direct_num_workers) == ("multi_processing", available_cores())
    assert cnn_threads_for(None, workers) == 1
    options, runner, workers = make_pipeline_options(["--direct_num_workers=1"])
    assert workers == 1 and cnn_threads_for(None, 1) == available_cores()
    options, runner, workers = make_pipeline_options(["--runner=FlinkRunner", "--flink_master=host:8081"])
    assert runner is None and workers is None and options.view_as(StandardOptions).runner == "FlinkRunner"
    assert cnn_threads_for(None, None) == 1 and cnn_threads_for(3, None) == 3


def test_inputs_and_clip_ids_are_extracts(tmp_path: Path) -> None:
    from pipeline.beam.sources import UrlInput, split_inputs
    from pipeline.inputs import collect_inputs

    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.wav", "a/b/y.flac", "z.mp3", "a/notes.txt.bak"):
        (tmp_path / name).write_bytes(b"RIFF")
    arguments = [str(tmp_path / "a"), str(tmp_path / "*.mp3"), "gs://bucket/clips/*/*.wav", "s3://b/dir/"]
    local, urls = split_inputs(arguments)
    expected = collect_inputs([str(tmp_path / "a"), str(tmp_path / "z.mp3")])
    assert local == [(str(item.path), item.clip_id) for item in expected]
    assert [clip_id for _, clip_id in local] == ["x.wav", "b/y.flac", "z.mp3"]
    assert urls == [UrlInput("gs://bucket/clips/*/*.wav", "gs://bucket/clips/"), UrlInput("s3://b/dir/**", "s3://b/dir/")]


def test_url_clip_ids() -> None:
    from pipeline.beam.sources import clip_id_for, is_audio_name

    assert clip_id_for("gs://bucket/clips/dogs/bark.wav", "gs://bucket/clips/") == "dogs/bark.wav"
    assert clip_id_for("gs://bucket/clips/dogs/bark.wav", "") == "bark.wav"
    assert is_audio_name("gs://b/x.FLAC") and not is_audio_name("gs://b/.x.wav") and not is_audio_name("gs://b/x.txt")


def test_run_names_and_refusals(tmp_path: Path) -> None:
    from pipeline.beam.extract import BeamExtractOptions, check_output_folder, next_run_name
    from pipeline.errors import PipelineError

    assert next_run_name(str(tmp_path)) == "r001"
    (tmp_path / "embeddings-r001-00000-of-00001.tfrecord").write_bytes(b"")
    (tmp_path / "errors-r007-00000-of-00001.tsv").write_text("path\tclip_id\treason\n")  # earlier versions
    assert next_run_name(str(tmp_path)) == "r008"
    (tmp_path / "_errors-r008-00000-of-00001.tsv").write_text("path\tclip_id\treason\n")
    assert next_run_name(str(tmp_path)) == "r009"
    with pytest.raises(PipelineError, match="--skip-existing"):
        check_output_folder(BeamExtractOptions(out=str(tmp_path)))
    with pytest.raises(PipelineError, match="tfrecord records"):
        check_output_folder(BeamExtractOptions(out=str(tmp_path), format="parquet", skip_existing=True))
    found = check_output_folder(BeamExtractOptions(out=str(tmp_path), skip_existing=True))
    assert len(found["tfrecord"]) == 1 and len(found["errors"]) == 2


def test_a_checkpoint_url_goes_to_the_workers_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.beam.cli import checkpoint_location

    monkeypatch.delenv("AUDIOTAG_VGGISH_CHECKPOINT", raising=False)
    args = build_parser().parse_args(["--vggish-checkpoint", "gs://bucket/vggish_model.ckpt", "beam-extract",
                                      "in", "-o", "out"])
    assert checkpoint_location(args, lambda _: Path("/never")) == "gs://bucket/vggish_model.ckpt"
    args = build_parser().parse_args(["beam-extract", "in", "-o", "out"])
    args.vggish_checkpoint = None
    assert checkpoint_location(args, lambda _: Path("/local/ckpt")) == "/local/ckpt"
    monkeypatch.setenv("AUDIOTAG_VGGISH_CHECKPOINT", "s3://b/c.ckpt")
    assert checkpoint_location(args, lambda _: Path("/never")) == "s3://b/c.ckpt"
