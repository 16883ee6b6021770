"""Throughput and memory of `audiotag extract` against a serial loop and the ideal pipelined bound.

    python benchmarks/bench_extract.py [--clips 200] [--repeats 2] [--checkpoint PATH] [--workers N]

For each input kind (10-s clips at 44.1 kHz stereo and at 16 kHz mono, generated into a temporary folder):
- stage costs, measured one file at a time on one core (TensorFlow limited to one thread): decode,
  resample, log-mel, CNN — in CPU seconds per second of audio;
- the ideal pipelined bound: with every core busy and no overhead, cores / (sum of stage costs) seconds of
  audio per wall second;
- a serial loop over the same files with the model loaded once (VGGish.embed_file + postprocess,
  TensorFlow free to use every core);
- `extract()` itself (npz output, model loaded once, worker processes for the front end, the CLI's
  default threads), with the CPU time of its whole process tree (main, forkserver, workers);
- peak resident memory of the whole `audiotag extract` process tree for 1/4, 1/2 and all of the files;
- the CNN-only limit (--limit-clips, default 91 clips = 910 patches): whole processes, alternately,
  `audiotag extract` on the clips against a process that only imports, loads the model and runs the CNN on
  as many patches (--only-limit runs just this; the issue's target: extract >= 0.85 of the limit at
  44.1 kHz stereo, >= 0.9 at 16 kHz mono); --vggish-engine lite runs both on LiteRT.
Each repeat measures the stage costs, runs the serial loop and `extract()`, then measures the stage costs
again; its bound uses the mean of the two, because this machine's speed drifts between moments (2x seen).
The repeat with the fastest `extract` is reported, with its own serial run and bound; all repeats are
printed too. Without --checkpoint a SYNTHETIC checkpoint is used: same architecture, so the same cost as
the release.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

KINDS = {"44.1k-stereo": (44100, 2), "16k-mono": (16000, 1)}
CLIP_SECONDS = 10.0


def generate_clips(folder: Path, count: int, sample_rate: int, channels: int, seed: int = 0) -> list[Path]:
    """`count` PCM-16 WAV files of 10 s: a few tones with vibrato over pink-ish noise, seeded."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(CLIP_SECONDS * sample_rate)) / sample_rate
    paths = []
    for i in range(count):
        signal = np.cumsum(rng.standard_normal((len(t), channels)), axis=0)
        signal -= signal.mean(axis=0)
        signal *= 0.05 / (np.abs(signal).max() + 1e-9)
        for _ in range(3):
            f0 = rng.uniform(100, 4000)
            tone = np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * rng.uniform(0.2, 5) * t))
            signal += rng.uniform(0.05, 0.25) * tone[:, None]
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, np.clip(signal, -1, 1), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def _cpu_seconds(function, *args):
    start = time.process_time()
    result = function(*args)
    return time.process_time() - start, result


def stage_costs(paths: list[Path], checkpoint: Path, batch_size: int) -> dict[str, float]:
    """CPU seconds per audio second of each stage, one core (TensorFlow with one thread)."""
    import vggish
    from vggish.resample import resample

    totals = dict.fromkeys(("decode", "resample", "log-mel", "cnn"), 0.0)
    audio_seconds = 0.0
    examples_all = []
    for path in paths:
        cost, (samples, rate) = _cpu_seconds(vggish.read_audio, path)
        totals["decode"] += cost
        cost, resampled = _cpu_seconds(resample, samples.astype(np.float64), rate)
        totals["resample"] += cost
        cost, examples = _cpu_seconds(vggish.waveform_to_examples, resampled, 16000)
        totals["log-mel"] += cost
        examples_all.append(examples)
        audio_seconds += len(samples) / rate
    with vggish.VGGish(checkpoint, intra_op_threads=1, inter_op_threads=1) as model:
        examples = np.concatenate(examples_all)
        model.embed(examples[:batch_size], batch_size=batch_size)  # warm-up
        # Process CPU time, not wall time: once another session has started TensorFlow's shared pools (the
        # synthetic-checkpoint writer does), a one-thread session still ran on two cores here.
        totals["cnn"], _ = _cpu_seconds(model.embed, examples, batch_size)
    return {name: value / audio_seconds for name, value in totals.items()}


def serial_loop(paths: list[Path], checkpoint: Path) -> float:
    """Audio seconds per wall second of a plain loop: embed_file + postprocess per file, model loaded once."""
    import vggish

    with vggish.VGGish(checkpoint) as model:
        model.embed(np.zeros((8, 96, 64), np.float32))  # warm-up, as extract's model is loaded before timing
        audio_seconds = 0.0
        start = time.perf_counter()
        for path in paths:
            raw, _ = model.embed_file(path)
            model.postprocess(raw)
            info = sf.info(str(path))
            audio_seconds += info.frames / info.samplerate
        return audio_seconds / (time.perf_counter() - start)


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (Linux /proc)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    stack.extend(int(child) for child in f.read().split())
        except OSError:
            continue
    return found


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    total = 0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


def _cpu_seconds_by_pid(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each process in the tree (fields 14 and 15 of /proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[member] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return out


class TreeCPU:
    """CPU seconds used by this process and its descendants inside the `with` block (sampled).

    Sampling walks /proc over every thread of the tree, and its own CPU time counts against the extract
    being measured: at 0.05 s it took about a tenth of a core. Workers only exit at the very end, idle, so
    a coarse interval loses nothing.
    """

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.latest: dict[int, float] = {}
        self.seconds = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> TreeCPU:
        self.baseline = _cpu_seconds_by_pid(os.getpid())
        self.latest = dict(self.baseline)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.latest.update(_cpu_seconds_by_pid(os.getpid()))
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.latest.update(_cpu_seconds_by_pid(os.getpid()))
        self.seconds = sum(v - self.baseline.get(pid, 0.0) for pid, v in self.latest.items())


def run_cli_extract(
    inputs: list[Path], out: Path, checkpoint: Path, workers: int | None, batch_size: int, engine: str = "tf"
) -> tuple[float, int]:
    """Run `audiotag extract` on the files as a subprocess: (wall seconds, peak tree RSS bytes)."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"{p}\n" for p in inputs))
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "--vggish-checkpoint",
        str(checkpoint),
        "extract",
        str(listing),
        "-o",
        str(out),
        "--format",
        "npz",
        "--batch-size",
        str(batch_size),
        "--no-progress",
        "--vggish-engine",
        engine,
    ]
    if workers:
        command += ["--workers", str(workers)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_bytes(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"extract failed ({process.returncode}): {stderr}")
    return wall, peak


def in_process_extract(
    paths: list[Path], out: Path, checkpoint: Path, workers: int | None, batch_size: int
) -> tuple[float, float, float]:
    """`pipeline.extract.extract` with the model already loaded: (audio seconds per wall second, CPU
    seconds of the whole process tree per audio second, cores used on average)."""
    import vggish
    from pipeline import frontend
    from pipeline.extract import ExtractOptions, default_cnn_threads, extract
    from pipeline.inputs import collect_inputs

    inputs = collect_inputs([str(paths[0].parent)])
    options = ExtractOptions(out_dir=out, format="npz", batch_size=batch_size, progress=False)
    if workers:
        options.workers = workers
    frontend.prestart()  # as the CLI does: the workers' warm-up overlaps loading the model
    with vggish.VGGish(checkpoint, intra_op_threads=default_cnn_threads(), inter_op_threads=1) as model:
        model.embed(np.zeros((8, 96, 64), np.float32))
        with TreeCPU() as cpu:
            report = extract(inputs, model, options)
    if report.done != len(paths):
        raise RuntimeError(f"extract embedded {report.done} of {len(paths)} files")
    return (
        report.audio_seconds / report.wall_seconds,
        cpu.seconds / report.audio_seconds,
        cpu.seconds / report.wall_seconds,
    )


CNN_ONLY = r"""
import sys
import numpy as np
import vggish
from pipeline.extract import default_cnn_threads
checkpoint, patches, batch, engine = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
threads = default_cnn_threads()
with vggish.load_embedder(checkpoint, engine, intra_op_threads=threads, inter_op_threads=1) as model:
    model.embed(np.zeros((patches, 96, 64), np.float32), batch_size=batch)
"""


def cnn_limit(paths: list[Path], tmp: Path, checkpoint: Path, workers: int | None, batch_size: int,
              pairs: int, engine: str = "tf") -> dict[str, object]:
    """Whole processes, alternately: `audiotag extract --vggish-engine ENGINE` on the files against a process
    that only imports, loads the model on the same engine (the CLI's threads) and runs the CNN on as many
    patches; medians of wall time."""
    audio_seconds = sum(sf.info(str(p)).frames / sf.info(str(p)).samplerate for p in paths)
    extract_walls, cnn_walls = [], []
    for pair in range(pairs):
        out = tmp / f"limit-{pair}"
        wall, _ = run_cli_extract(paths, out, checkpoint, workers, batch_size, engine)
        extract_walls.append(wall)
        patches = 0  # as many as extract embedded
        for npz in out.rglob("*.npz"):
            with np.load(npz) as z:
                patches += len(z["embedding"])
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CNN_ONLY, str(checkpoint), str(patches), str(batch_size),
                        engine], check=True, stderr=subprocess.DEVNULL)
        cnn_walls.append(time.perf_counter() - start)
    extract_wall, cnn_wall = statistics.median(extract_walls), statistics.median(cnn_walls)
    return {
        "vggish_engine": engine,
        "files": len(paths),
        "patches": patches,
        "extract_x_realtime": round(audio_seconds / extract_wall, 1),
        "cnn_only_x_realtime": round(audio_seconds / cnn_wall, 1),
        "extract_vs_cnn_only": round(cnn_wall / extract_wall, 3),
        "extract_walls_s": [round(w, 2) for w in extract_walls],
        "cnn_only_walls_s": [round(w, 2) for w in cnn_walls],
        "load_average": round(_load_average(), 2),
    }


def _load_average() -> float:
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200, help="clips per input kind (default 200)")
    parser.add_argument("--checkpoint", type=Path, help="VGGish checkpoint (default: a synthetic one)")
    parser.add_argument("--workers", type=int, default=None, help="extract --workers (default: one per core)")
    parser.add_argument("--batch-size", type=int, default=128, help="CNN batch (default 128)")
    parser.add_argument("--stage-clips", type=int, default=20, help="clips used to measure stage costs")
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=list(KINDS))
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS runs")
    parser.add_argument("--repeats", type=int, default=2, help="serial/extract runs per kind, best kept")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--limit-clips", type=int, default=91,
                        help="clips for the CNN-only-limit comparison (default 91: 910 patches)")
    parser.add_argument("--limit-pairs", type=int, default=3,
                        help="alternating extract / CNN-only process pairs (default 3; 0 skips it)")
    parser.add_argument("--only-limit", action="store_true",
                        help="only the CNN-only-limit comparison (skip stage costs, serial loop, RSS)")
    parser.add_argument("--vggish-engine", choices=("tf", "lite"), default="tf",
                        help="the VGGish engine of the CNN-only-limit comparison, both sides (default tf)")
    args = parser.parse_args(argv)

    from pipeline.extract import default_workers

    cores = default_workers()
    figures: dict[str, object] = {
        "load_average_at_start": round(_load_average(), 2),
        "cores": cores,
        "clips": args.clips,
        "clip_seconds": CLIP_SECONDS,
        "batch_size": args.batch_size,
        "workers": args.workers or cores,
    }
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = args.checkpoint
        if checkpoint is None:
            from vggish.synthetic import write_synthetic_checkpoint

            checkpoint = write_synthetic_checkpoint(tmp / "synthetic.ckpt", seed=0)
            print("using a SYNTHETIC checkpoint (same architecture and cost as the release)", flush=True)
        if args.vggish_engine == "lite":
            from vggish import lite_cache

            lite_cache.ensure(checkpoint)  # built before timing, cached beside the checkpoint
        for kind in args.kinds:
            rate, channels = KINDS[kind]
            paths = generate_clips(tmp / kind, max(args.clips, args.limit_clips), rate, channels)
            limit_paths, paths = paths[: args.limit_clips], paths[: args.clips]
            if args.limit_pairs:
                limit = cnn_limit(limit_paths, tmp, checkpoint, args.workers, args.batch_size,
                                  args.limit_pairs, args.vggish_engine)
                print(json.dumps({kind: {"cnn_only_limit": limit}}, indent=2), flush=True)
                figures.setdefault("cnn_only_limit", {})[kind] = limit
            if args.only_limit:
                continue
            # This VM's speed drifts between moments (2x seen here), so every repeat brackets its serial and
            # extract runs with stage-cost measurements and is judged against its own bound.
            repeats = []
            for repeat in range(args.repeats):  # interleaved; the best run saw the least interference
                load = _load_average()
                before = stage_costs(paths[: args.stage_clips], checkpoint, args.batch_size)
                serial = serial_loop(paths, checkpoint)
                out = tmp / f"out-{kind}-{repeat}"
                pipelined, cpu_per_audio_s, cores_used = in_process_extract(
                    paths, out, checkpoint, args.workers, args.batch_size
                )
                shutil.rmtree(out, ignore_errors=True)
                after = stage_costs(paths[: args.stage_clips], checkpoint, args.batch_size)
                costs = {name: (before[name] + after[name]) / 2 for name in before}
                repeats.append({
                    "load_average": round(load, 2),
                    "stage_total_before_after": [round(sum(c.values()), 5) for c in (before, after)],
                    "costs": costs,
                    "serial": serial,
                    "extract": (pipelined, cpu_per_audio_s, cores_used),
                })
            best = max(repeats, key=lambda r: r["extract"][0])
            costs, serial = best["costs"], best["serial"]
            pipelined, cpu_per_audio_s, cores_used = best["extract"]
            total = sum(costs.values())
            bound = cores / total
            row: dict[str, object] = {
                "stage_cpu_s_per_audio_s": {k: round(v, 5) for k, v in costs.items()},
                "sum_of_stages_cpu_s_per_audio_s": round(total, 5),
                "sum_of_stages_x_realtime_one_core": round(1 / total, 1),
                "ideal_pipelined_bound_x_realtime": round(bound, 1),
                "serial_loop_x_realtime": round(serial, 1),
                "extract_x_realtime": round(pipelined, 1),
                "extract_vs_serial": round(pipelined / serial, 3),
                "extract_vs_bound": round(pipelined / bound, 3),
                "extract_cpu_s_per_audio_s": round(cpu_per_audio_s, 5),
                "extract_cores_used": round(cores_used, 2),
                "all_repeats": [
                    {
                        "serial_x_realtime": round(r["serial"], 1),
                        "extract_x_realtime": round(r["extract"][0], 1),
                        "bound_x_realtime": round(cores / sum(r["costs"].values()), 1),
                        "stage_cpu_s_per_audio_s_before_after": r["stage_total_before_after"],
                        "load_average": r["load_average"],
                    }
                    for r in repeats
                ],
            }
            if not args.no_rss and kind == args.kinds[0]:
                rss = {}
                for n in sorted({max(1, args.clips // 4), max(1, args.clips // 2), args.clips}):
                    _, peak = run_cli_extract(
                        paths[:n], tmp / f"rss-{kind}-{n}", checkpoint, args.workers, args.batch_size
                    )
                    rss[n] = round(peak / 2**20)
                row["peak_tree_rss_mib_by_files"] = rss
            figures[kind] = row
            print(json.dumps({kind: row}, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
