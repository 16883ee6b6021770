"""Throughput of `audiotag beam-extract` on Beam's local runner (1 and 2 worker processes) and through
Beam's PortableRunner (a job service and an external worker pool on this machine) against `audiotag
extract`, on the same generated clips, as whole processes, alternating.

    python benchmarks/bench_beam.py [--clips 200] [--repeats 2] [--rate 44100] [--channels 2]
                                    [--checkpoint PATH] [--batch-size 128]
                                    [--kinds extract,beam-1,beam-2,portable]

Each repeat runs, in this order (the order rotates by one between repeats): `audiotag extract`
(TFRecords, default workers and CNN threads), `audiotag beam-extract --direct_num_workers=1` and
`--direct_num_workers=2` (TFRecords; CNN threads per worker = cores / workers), and `beam-extract` through
the PortableRunner (`portable`): Beam's local job service runs a job on one SDK worker process, started by
the worker pool, given `--cnn-threads` = cores. Throughput is audio seconds per wall second of the whole
process, start-up included (Python and TensorFlow imports, loading the checkpoint in every worker, Beam's
worker start-up); the job service and the worker pool are started once, before the first repeat, and their
start-up is not counted. Ratios are against the `extract` run of the same repeat; CPU seconds are those of
each run's whole process tree, the job service, the worker pool and its SDK workers included (sampled from
/proc every 0.5 s).
Beam's own counters of each run are printed (decode CPU ms, patches, RunInference batch latency), and
the Beam runs' embeddings are compared with extract's. Without --checkpoint a SYNTHETIC checkpoint is used:
same architecture, so the same cost as the release.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_extract import CLIP_SECONDS, TreeCPU, generate_clips

REPO_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("extract", "beam-1", "beam-2", "portable")


def _command(kind: str, inputs: Path, out: Path, checkpoint: Path, batch_size: int,
             portable: Sequence[str]) -> list[str]:
    base = [sys.executable, "-m", "pipeline", "--vggish-checkpoint", str(checkpoint)]
    if kind == "extract":
        return [*base, "extract", str(inputs), "-o", str(out), "--no-progress",
                "--batch-size", str(batch_size)]
    beam = [*base, "beam-extract", str(inputs), "-o", str(out), "--batch-size", str(batch_size)]
    if kind == "portable":
        return [*beam, "--cnn-threads", str(len(os.sched_getaffinity(0))), *portable]
    return [*beam, f"--direct_num_workers={kind.split('-')[-1]}"]


def run(kind: str, inputs: Path, out: Path, checkpoint: Path, batch_size: int,
        portable: Sequence[str] = ()) -> dict:
    """One whole process: wall seconds, exit status, CPU seconds of its process tree, Beam's counters.
    `portable`: the pipeline options of the running job service and worker pool (kind `portable`)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
    with TreeCPU() as cpu:  # sampled over the whole process tree (workers, forkserver, Beam's SDK workers)
        started = time.monotonic()
        process = subprocess.run(_command(kind, inputs, out, checkpoint, batch_size, portable), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - started
    counters = {}
    match = re.search(r"counters: (.*)", process.stderr)
    if match:
        counters = {k: int(v) for k, v in (item.split("=") for item in match.group(1).split(", "))}
    if process.returncode != 0:
        print(process.stderr[-3000:], file=sys.stderr)
    return {"kind": kind, "wall_s": wall, "rc": process.returncode,
            "cpu_s": cpu.seconds,
            "counters": counters}


def read_embeddings(folder: Path) -> dict[str, bytes]:
    """video_id -> the concatenated 128-byte frames of every SequenceExample in a folder's TFRecords."""
    import tensorflow as tf

    clips = {}
    for record in tf.data.TFRecordDataset([str(p) for p in sorted(folder.glob("*.tfrecord"))]):
        example = tf.train.SequenceExample.FromString(record.numpy())
        clip_id = example.context.feature["video_id"].bytes_list.value[0].decode()
        frames = example.feature_lists.feature_list["audio_embedding"].feature
        clips[clip_id] = b"".join(f.bytes_list.value[0] for f in frames)
    return clips


def compare(reference: dict[str, bytes], other: dict[str, bytes]) -> str:
    """Same clip ids and patch counts? How many uint8 values differ, and by how much at most."""
    import numpy as np

    if set(reference) != set(other):
        return f"clip ids differ ({len(set(reference) ^ set(other))} not in both)"
    values = differing = largest = 0
    for clip_id, frames in reference.items():
        if len(frames) != len(other[clip_id]):
            return f"{clip_id}: {len(frames) // 128} patches against {len(other[clip_id]) // 128}"
        a = np.frombuffer(frames, np.uint8).astype(int)
        b = np.frombuffer(other[clip_id], np.uint8).astype(int)
        values += a.size
        differing += int((a != b).sum())
        largest = max(largest, int(np.abs(a - b).max(initial=0)))
    return (f"same {len(reference)} clip ids and patch counts; {differing} of {values} values differ "
            f"({100 * differing / max(values, 1):.4f} %), by at most {largest}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200, help="generated 10-s clips (default 200)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--rate", type=int, default=44100, help="sample rate of the clips (default 44100)")
    parser.add_argument("--channels", type=int, default=2, help="channels of the clips (default 2)")
    parser.add_argument("--checkpoint", type=Path, help="VGGish checkpoint (default: a synthetic one)")
    parser.add_argument("--batch-size", type=int, default=128, help="CNN batch in patches (default 128)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="the runs of each repeat, comma-separated, extract among them (default: all)")
    args = parser.parse_args(argv)

    kinds = args.kinds.split(",")
    if "extract" not in kinds or not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: `extract` and any of {', '.join(KINDS[1:])}")
    with tempfile.TemporaryDirectory(prefix="bench_beam_") as tmp, contextlib.ExitStack() as services:
        folder = Path(tmp)
        portable: list[str] = []
        if "portable" in kinds:
            from pipeline.beam.portable import local_portable_services

            portable = services.enter_context(local_portable_services(folder / "services")).pipeline_args()
        checkpoint = args.checkpoint
        if checkpoint is None:
            from vggish.synthetic import write_synthetic_checkpoint

            checkpoint = folder / "synthetic.ckpt"
            write_synthetic_checkpoint(checkpoint, seed=0)
        inputs = folder / "clips"
        generate_clips(inputs, args.clips, args.rate, args.channels)
        audio_seconds = args.clips * CLIP_SECONDS
        cores = len(os.sched_getaffinity(0))
        print(f"{args.clips} clips of {CLIP_SECONDS:.0f} s at {args.rate} Hz x{args.channels}, "
              f"{cores} cores, load average {os.getloadavg()[0]:.1f}; CNN threads per worker: "
              f"extract {cores} (one process), "
              f"beam-1 {cores}, beam-2 {max(1, cores // 2)}, portable {cores} (one SDK worker)")
        results = []
        for repeat in range(args.repeats):
            order = kinds[repeat % len(kinds):] + kinds[: repeat % len(kinds)]
            round_results = {}
            for kind in order:
                result = run(kind, inputs, folder / f"out-{repeat}-{kind}", checkpoint, args.batch_size,
                             portable)
                result["x_real_time"] = audio_seconds / result["wall_s"]
                result["repeat"] = repeat
                round_results[kind] = result
                print(f"repeat {repeat} {kind:8s} rc={result['rc']} wall {result['wall_s']:7.1f} s  "
                      f"{result['x_real_time']:6.1f}x real time  cpu {result['cpu_s']:7.1f} s  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
            for kind in kinds:
                ratio = round_results["extract"]["wall_s"] / round_results[kind]["wall_s"]
                round_results[kind]["ratio_vs_extract"] = ratio
            beam_kinds = [kind for kind in kinds if kind != "extract"]
            print(f"repeat {repeat}: " + ", ".join(
                f"{kind} / extract {round_results[kind]['ratio_vs_extract']:.2f}" for kind in beam_kinds))
            for kind in beam_kinds:
                counters = round_results[kind]["counters"]
                if counters:
                    latency = counters.get("VGGish/inference_batch_latency_micro_secs.sum", 0) / 1e6
                    print(f"  {kind} counters: decode CPU {counters.get('decode_msec', 0) / 1000:.1f} s, "
                          f"patches {counters.get('patches', 0)}, CNN batches "
                          f"{counters.get('VGGish/inference_batch_latency_micro_secs.count', 0)} taking "
                          f"{latency:.1f} s (wall, summed over workers), model loads "
                          f"{counters.get('VGGish/load_model_latency_milli_secs.count', 0)} taking "
                          f"{counters.get('VGGish/load_model_latency_milli_secs.sum', 0) / 1000:.1f} s")
            reference = read_embeddings(folder / f"out-{repeat}-extract")
            for kind in beam_kinds:
                verdict = compare(reference, read_embeddings(folder / f"out-{repeat}-{kind}"))
                round_results[kind]["equality_vs_extract"] = verdict
                print(f"  {kind} outputs against extract's: {verdict}")
            results.extend(round_results.values())
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
