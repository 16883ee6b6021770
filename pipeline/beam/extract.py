"""`audiotag beam-extract`: VGGish embeddings of many files as an Apache Beam pipeline.

match -> reshuffle -> plan segments -> reshuffle -> decode / resample / log-mel -> RunInference (VGGish,
batches of patches spanning files) -> group by clip -> PCA + quantize -> records -> WriteToTFRecord or
WriteToParquet; failures -> `OUT/_errors-<run>-*.tsv`. Each run writes its shards under a new prefix,
`embeddings-<run>-SSSSS-of-NNNNN.<tfrecord|parquet>` with run = r001, r002, ...; with --skip-existing the
clip ids already in OUT (records of any run, or of `audiotag extract`, and errors) are left out. Everything
in OUT that is not a record starts with `_` or `.`, so a Parquet OUT is a dataset that pyarrow, pandas,
DuckDB and Spark read whole (errors files of earlier versions, `errors-<run>-*.tsv`, are still read).

Temporaries: a run that fails removes the temporary folders Beam's writers made for it in OUT
(`beam-temp-<prefix>-<run>-<hex>`). A local OUT is locked for the run (safeio.lock), so the temporary
folders found there at the start are those of runs that died (killed, or stopped with Ctrl-C), and are
removed. Finished files are never touched.

Runner: with no `--runner` among the Beam options, Beam's portable FnApiRunner in multi-process mode, one
worker process per core (`--direct_num_workers` to change it); any other runner takes its own options.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.beam.sources import UrlInput, clip_id_for, is_audio_name, is_url
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

RECORD_SUFFIXES = {"tfrecord": ".tfrecord", "parquet": ".parquet"}
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
ERRORS_PREFIX = "_errors"  # dead letters: `_` keeps them out of the dataset readers' view of OUT
ERRORS_SUFFIX = ".tsv"
_OUTPUT_PREFIXES = r"(?:embeddings|_?errors|tags)"  # errors-: what earlier versions wrote
_RUN_PATTERN = re.compile(rf"^{_OUTPUT_PREFIXES}-r(\d+)-")
_BEAM_TEMP_PREFIX = "beam-temp-"  # + the basename of an output prefix + "-" + a uuid1 in hex (FileBasedSink)
PATCH_SECONDS = 0.96
LOCAL_WORKER_LOG_LEVEL = "WARNING"  # Beam's workers log every bundle at INFO


@dataclass
class BeamExtractOptions:
    """Settings of one beam-extract run. out: output folder (local path or URL); segment_seconds: files
    longer than this are split into segments of about this length; num_shards: 0 lets the runner choose;
    batch_size: CNN batch in patches; cnn_threads: TensorFlow intra-op threads per worker process (None:
    cores / local workers, or 1 on a cluster runner); beam_args: Beam pipeline options."""

    out: str
    format: str = "tfrecord"
    raw: bool = False
    labels: Mapping[str, Sequence[int]] | None = None
    segment_seconds: float = 600.0
    num_shards: int = 0
    batch_size: int = 128
    hop_seconds: float = 0.96
    skip_existing: bool = False
    cnn_threads: int | None = None
    beam_args: list[str] = field(default_factory=list)
    wait: bool = False


@dataclass
class BeamReport:
    """What a beam-extract or beam-tag run did: its run name, counters of this run (None when the runner
    reports no metrics), failures listed in OUT's errors files, wall time (s), all metrics, and (extract)
    the local workers and CNN threads per worker."""

    run: str
    clips_done: int | None
    clips_failed: int | None
    failures_in_out: int
    wall_seconds: float
    metrics: dict[str, int] = field(default_factory=dict)
    workers: int | None = None
    cnn_threads: int | None = None


# --- runner -------------------------------------------------------------------------------------------
def _has_option(beam_args: Sequence[str], name: str) -> bool:
    return any(arg == f"--{name}" or arg.startswith(f"--{name}=") for arg in beam_args)


def make_pipeline_options(beam_args: Sequence[str]) -> tuple[Any, Any, int | None]:
    """(PipelineOptions, runner or None, local worker count or None) for `beam_args`. Without --runner:
    Beam's FnApiRunner in multi-process mode with one worker per core (unless --direct_num_workers /
    --direct_running_mode say otherwise); DirectRunner would first try to download a Prism binary."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from pipeline.extract import available_cores

    args = list(beam_args)
    if _has_option(args, "runner"):
        return PipelineOptions(args), None, None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    if not _has_option(args, "direct_running_mode"):
        args.append("--direct_running_mode=multi_processing")
    if not _has_option(args, "direct_num_workers"):
        args.append(f"--direct_num_workers={available_cores()}")
    if not _has_option(args, "default_sdk_harness_log_level"):
        args.append(f"--default_sdk_harness_log_level={LOCAL_WORKER_LOG_LEVEL}")
    options = PipelineOptions(args)
    return options, FnApiRunner(), max(1, options.view_as(DirectOptions).direct_num_workers)


def cnn_threads_for(requested: int | None, local_workers: int | None) -> int:
    """Intra-op threads per worker process: as requested; else this machine's cores shared among the local
    worker processes; else 1 on a cluster, where runners start one SDK process per core (Dataflow's
    default for Python)."""
    from pipeline.extract import available_cores

    if requested:
        return requested
    if local_workers:
        return max(1, available_cores() // local_workers)
    return 1


# --- output folder ------------------------------------------------------------------------------------
def _join(folder: str, name: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(folder, name)


def _match(pattern: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    try:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception:  # no match (or no such folder yet)
        return []


def existing_outputs(out: str) -> dict[str, list[str]]:
    """Files of earlier runs in `out`: {"tfrecord": [...], "parquet": [...], "errors": [...]}. Also finds
    `audiotag extract` shards and its errors report (`_errors.tsv` or `errors.tsv`), and the errors files of
    earlier versions (`errors-<run>-*.tsv`)."""
    found = {fmt: _match(_join(out, f"embeddings-*{suffix}")) for fmt, suffix in RECORD_SUFFIXES.items()}
    found["errors"] = sorted(_match(_join(out, f"{ERRORS_PREFIX}*{ERRORS_SUFFIX}"))
                             + _match(_join(out, f"errors*{ERRORS_SUFFIX}")))
    return found


def next_run_name(out: str, prefix: str = "embeddings") -> str:
    """`r001` for a new folder, else one more than the highest run number of the files in it."""
    names = [path.rsplit("/", 1)[-1] for path in _match(_join(out, "*"))]
    numbers = [int(m.group(1)) for m in map(_RUN_PATTERN.match, names) if m]
    return f"r{max(numbers, default=0) + 1:03d}"


def beam_temporaries(out: str, run: str | None = None) -> set[str]:
    """Beam's temporary folders in `out` of run `run` (None: of any run):
    `beam-temp-<embeddings|_errors|tags>-<run>-<hex>`, one per output prefix (its writers put the shards
    there and delete the folder once they are renamed into place). A local folder is listed; in an object
    store a folder is found by the files in it."""
    runs = r"r\d+" if run is None else re.escape(run)
    pattern = re.compile(rf"{_BEAM_TEMP_PREFIX}{_OUTPUT_PREFIXES}-{runs}-[0-9a-f]+")
    if not is_url(out):
        try:
            names = os.listdir(out)
        except OSError:  # no such folder yet
            return set()
        return {os.path.join(out, name) for name in names if pattern.fullmatch(name)}
    from apache_beam.io.filesystems import FileSystems

    files = _match(_join(out, f"{_BEAM_TEMP_PREFIX}*-{run or 'r'}*/*"))
    folders = {FileSystems.split(path)[0] for path in files}
    return {folder for folder in folders if pattern.fullmatch(FileSystems.split(folder)[1])}


@contextlib.contextmanager
def locked_output(out: str, wait: bool = False) -> Iterator[None]:
    """Hold a local output folder's lock (safeio.lock) for the block, and first remove the temporary folders
    that dead runs left in it: with the lock held, no other local run is writing there. An object store has
    no lock and is left as it is: there the user keeps runs apart."""
    if is_url(out):
        yield
        return
    from safeio.lock import FolderLock

    with FolderLock(out, wait=wait):
        dead = beam_temporaries(out)
        if dead:
            logger.warning("%s: removing %d temporary folders of runs that did not finish", out, len(dead))
            remove_folders(dead)
        yield


def remove_folders(folders: Iterable[str]) -> None:
    """Delete folders and what they hold, through Beam's FileSystems (a failure is logged, not raised)."""
    from apache_beam.io.filesystems import FileSystems

    for folder in sorted(folders):
        try:
            FileSystems.delete([folder])
        except Exception as exc:  # BeamIOError and the file systems' own errors
            logger.warning("cannot remove Beam's temporary folder %s: %s", folder, exc)
        else:
            logger.info("removed Beam's temporary folder %s", folder)


def count_failures(paths: Sequence[str]) -> int:
    """Lines other than the header in errors files."""
    from apache_beam.io.filesystems import FileSystems

    from pipeline.errorlog import parse_error_line

    total = 0
    for path in paths:
        with FileSystems.open(path) as f:
            total += sum(parse_error_line(line) is not None for line in f.read().decode("utf-8").splitlines())
    return total


# --- the pipeline -------------------------------------------------------------------------------------
def _video_id_of_record(record: bytes) -> str:
    from tensorflow.core.example import example_pb2

    example = example_pb2.SequenceExample.FromString(record)
    return example.context.feature["video_id"].bytes_list.value[0].decode("utf-8")


def _clip_id_of_error_line(line: str) -> list[str]:
    from pipeline.errorlog import parse_error_line

    fields = parse_error_line(line)
    return [] if fields is None else [fields[1]]


def read_done_ids(p: Any, existing: Mapping[str, list[str]], out: str) -> Any:
    """PCollection of the clip ids already in OUT (records and errors of earlier runs), or None."""
    import apache_beam as beam

    sources = []
    if existing["tfrecord"]:
        pattern = _join(out, "embeddings-*.tfrecord")
        sources.append(p | "Read done TFRecords" >> beam.io.ReadFromTFRecord(pattern)
                       | "Their ids" >> beam.Map(_video_id_of_record))
    if existing["parquet"]:
        sources.append(p | "Read done Parquet" >> beam.io.ReadFromParquet(_join(out, "embeddings-*.parquet"),
                                                                          columns=["video_id"])
                       | "Parquet ids" >> beam.Map(lambda row: row["video_id"]))
    if existing["errors"]:
        sources.append(p | "Errors files" >> beam.Create(existing["errors"])
                       | "Read failed" >> beam.io.ReadAllFromText()
                       | "Failed ids" >> beam.FlatMap(_clip_id_of_error_line))
    if not sources:
        return None
    return sources | "All done ids" >> beam.Flatten()


def _keep_new(element: tuple[str, dict[str, list]]) -> list[tuple[str, str]]:
    _, groups = element
    if groups["done"]:
        return []
    return list(dict.fromkeys(groups["todo"]))


def _url_inputs(p: Any, url: UrlInput, index: int) -> Any:
    import apache_beam as beam
    from apache_beam.io import fileio

    base = url.base
    return (p | f"Match {index}" >> fileio.MatchFiles(url.pattern)
            | f"Audio files {index}" >> beam.Filter(lambda meta: is_audio_name(meta.path))
            | f"Clip ids {index}" >> beam.Map(lambda meta, base=base:
                                              (meta.path, clip_id_for(meta.path, base))))


def audio_inputs(p: Any, local: Sequence[tuple[str, str]], urls: Sequence[UrlInput]) -> Any:
    """PCollection of (path, clip_id): the local inputs plus every URL input matched at run time."""
    import apache_beam as beam

    parts = [p | "Local inputs" >> beam.Create(list(local))]
    parts += [_url_inputs(p, url, i) for i, url in enumerate(urls)]
    return parts | "All inputs" >> beam.Flatten() if len(parts) > 1 else parts[0]


def skip_done(inputs: Any, done: Any) -> Any:
    """Inputs whose clip id is not in `done` (an anti-join that scales to millions of ids)."""
    import apache_beam as beam

    keyed = inputs | "Key inputs" >> beam.Map(lambda item: (item[1], item))
    done_keyed = done | "Key done" >> beam.Map(lambda clip_id: (clip_id, None))
    return ({"todo": keyed, "done": done_keyed} | "Join done" >> beam.CoGroupByKey()
            | "Keep new" >> beam.FlatMap(_keep_new))


def embed_clips(inputs: Any, checkpoint: str, *, hop_seconds: float, segment_seconds: float,
                batch_size: int, cnn_threads: int, keep_raw: bool, vggish_engine: str = "tf") -> Any:
    """(path, clip_id) -> tagged outputs: `clips` (ClipEmbeddings) and FAILURES ((path, clip_id, reason)).
    `vggish_engine`: what runs the CNN in the workers (vggish.load_embedder's engines)."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    from pipeline.beam import stages

    segment_patches = max(1, int(segment_seconds // PATCH_SECONDS))
    planned = (inputs | "Spread files" >> beam.Reshuffle()
               | "Plan segments" >> beam.ParDo(stages.PlanSegments(segment_patches, hop_seconds))
               .with_outputs(stages.PARTS, main="segments"))
    decoded = (planned.segments | "Spread segments" >> beam.Reshuffle()
               | "Decode + log-mel" >> beam.ParDo(stages.DecodeSegment(hop_seconds))
               .with_outputs(stages.PARTS, main="patches"))
    cnn = stages.VGGishModelHandler(checkpoint, batch_size=batch_size, cnn_threads=cnn_threads,
                                    vggish_engine=vggish_engine)
    handler = KeyedModelHandler(cnn)
    embedded = (decoded.patches | "VGGish CNN" >> RunInference(handler)
                | "Patch parts" >> beam.Map(stages.patch_part))
    return ((embedded, planned[stages.PARTS], decoded[stages.PARTS]) | "All parts" >> beam.Flatten()
            | "Group by clip" >> beam.GroupByKey()
            | "Join + PCA" >> beam.ParDo(stages.JoinClip(hop_seconds, keep_raw))
            .with_outputs(stages.FAILURES, main="clips"))


def write_failures(failures: Any, out: str, run: str) -> None:
    """(path, clip_id, reason) -> OUT/_errors-<run>-SSSSS-of-NNNNN.tsv (no file when nothing failed)."""
    import apache_beam as beam

    from pipeline.beam import stages
    from pipeline.errorlog import HEADER

    (failures | "Error lines" >> beam.Map(stages.error_line)
     | "Write errors" >> beam.io.WriteToText(_join(out, f"{ERRORS_PREFIX}-{run}"),
                                             file_name_suffix=ERRORS_SUFFIX,
                                             shard_name_template=SHARD_TEMPLATE,
                                             header=HEADER.rstrip("\n"), skip_if_empty=True))


def write_records(clips: Any, options: BeamExtractOptions, run: str) -> None:
    import apache_beam as beam

    from pipeline.beam import stages

    prefix = _join(options.out, f"embeddings-{run}")
    suffix = RECORD_SUFFIXES[options.format]
    if options.format == "tfrecord":
        (clips | "SequenceExamples" >> beam.ParDo(stages.TFRecordRecord(options.labels))
         | "Write TFRecords" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=suffix,
                                                        num_shards=options.num_shards,
                                                        shard_name_template=SHARD_TEMPLATE))
    else:
        from pipeline import parquet

        (clips | "Parquet rows" >> beam.ParDo(stages.ParquetRow(options.labels, options.raw))
         | "Write Parquet" >> beam.io.WriteToParquet(prefix, parquet.schema(options.raw),
                                                     codec=parquet.COMPRESSION, file_name_suffix=suffix,
                                                     use_compliant_nested_type=True,
                                                     num_shards=options.num_shards,
                                                     shard_name_template=SHARD_TEMPLATE))


def check_output_folder(options: BeamExtractOptions) -> dict[str, list[str]]:
    """Existing outputs of OUT; refuses to add to a folder with outputs unless --skip-existing, and to mix
    record formats."""
    existing = existing_outputs(options.out)
    other = [fmt for fmt in RECORD_SUFFIXES if fmt != options.format and existing[fmt]]
    if other:
        raise PipelineError(f"{options.out}: holds {other[0]} records; use the same --format, "
                            "or a new folder")
    if not options.skip_existing and (existing[options.format] or existing["errors"]):
        raise PipelineError(f"{options.out}: holds outputs of an earlier run; pass --skip-existing to "
                            "process "
                            "only the files not in it yet, or choose a new output folder")
    return existing


def metrics_of(result: Any) -> dict[str, int]:
    """The pipeline's counters by name, summed over steps, plus `<name>.sum` / `.count` of distributions
    (RunInference's own metrics get a `VGGish/` prefix). Empty for runners without metrics support."""
    totals: dict[str, int] = {}
    try:
        query = result.metrics().query()
    except Exception:  # runners without metrics support
        return totals

    def add(name: str, value: Any) -> None:
        totals[name] = totals.get(name, 0) + int(value or 0)

    for kind in ("counters", "distributions"):
        for metric in query.get(kind, []):
            name = metric.key.metric.name
            if metric.key.metric.namespace == "VGGish":
                name = f"VGGish/{name}"
            value = metric.committed if metric.committed is not None else metric.attempted
            if kind == "counters":
                add(name, value)
            elif value is not None:
                add(f"{name}.sum", value.sum)
                add(f"{name}.count", value.count)
    return totals


def run_pipeline(pipeline: Any, out: str, run: str) -> Any:
    """Run and wait; a failed pipeline becomes one PipelineError line, once the temporary folders it made in
    `out` are removed: those of run `run` that were not there when it started (not those of an earlier
    attempt under the same run name, nor of other runs)."""
    before = beam_temporaries(out, run)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except KeyboardInterrupt:  # a cluster job may still be running: leave its folders alone
        raise
    except Exception as exc:
        remove_folders(beam_temporaries(out, run) - before)
        message = " ".join(str(exc).split())[:2000]
        raise PipelineError(f"the Beam pipeline failed: {type(exc).__name__}: {message}") from exc
    return result


def run_and_report(pipeline: Any, out: str, run: str, started: float, *, done_counter: str,
                   failures_of_run_only: bool = False, workers: int | None = None,
                   cnn_threads: int | None = None) -> BeamReport:
    """Run the pipeline (run_pipeline) and report it: clips_done is the counter `done_counter`;
    failures_in_out counts the failures listed in OUT's errors files (only this run's with
    failures_of_run_only); `started` is time.monotonic() at the run's start."""
    result = run_pipeline(pipeline, out, run)
    metrics = metrics_of(result)
    errors = existing_outputs(out)["errors"]
    if failures_of_run_only:
        errors = [path for path in errors if f"{ERRORS_PREFIX}-{run}-" in path]
    return BeamReport(
        run=run,
        clips_done=metrics.get(done_counter) if metrics else None,
        clips_failed=metrics.get("clips_failed", 0) if metrics else None,
        failures_in_out=count_failures(errors),
        wall_seconds=time.monotonic() - started,
        metrics=metrics,
        workers=workers,
        cnn_threads=cnn_threads,
    )


def beam_extract(local: Sequence[tuple[str, str]], urls: Sequence[UrlInput], checkpoint: str,
                 options: BeamExtractOptions) -> BeamReport:
    """Build and run the beam-extract pipeline over local (path, clip_id) inputs and URL inputs; a local
    output folder is locked for the run (locked_output; FolderBusyError unless options.wait)."""
    if options.format not in RECORD_SUFFIXES:
        raise PipelineError(f"unknown format {options.format!r}; choose tfrecord or parquet")
    if options.segment_seconds < 2 * PATCH_SECONDS:
        raise PipelineError("--segment-seconds must be at least 1.92 (two patches)")
    with locked_output(options.out, options.wait):
        return _beam_extract_locked(local, urls, checkpoint, options)


def _beam_extract_locked(local: Sequence[tuple[str, str]], urls: Sequence[UrlInput], checkpoint: str,
                         options: BeamExtractOptions) -> BeamReport:
    """beam_extract() while no other local run writes into the output folder."""
    import apache_beam as beam

    started = time.monotonic()
    existing = check_output_folder(options)
    run = next_run_name(options.out)
    pipeline_options, runner, workers = make_pipeline_options(options.beam_args)
    threads = cnn_threads_for(options.cnn_threads, workers)
    logger.info("beam-extract run %s: %s workers, %d CNN threads per worker", run, workers or "cluster",
                threads)
    pipeline = beam.Pipeline(runner=runner, options=pipeline_options)
    inputs = audio_inputs(pipeline, local, urls)
    if options.skip_existing:
        done = read_done_ids(pipeline, existing, options.out)
        if done is not None:
            inputs = skip_done(inputs, done)
    outputs = embed_clips(inputs, checkpoint, hop_seconds=options.hop_seconds,
                          segment_seconds=options.segment_seconds, batch_size=options.batch_size,
                          cnn_threads=threads, keep_raw=options.raw)
    write_records(outputs.clips, options, run)
    from pipeline.beam import stages

    write_failures(outputs[stages.FAILURES], options.out, run)
    return run_and_report(pipeline, options.out, run, started, done_counter="clips_done", workers=workers,
                          cnn_threads=threads)
