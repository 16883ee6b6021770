"""resampy's `kaiser_best` resampling as a polyphase matrix product (BLAS), for rational rate ratios.

resampy computes output sample t at input time t_out = t * (1 / ratio) (ratio = sr_out / sr_in, float64),
with n = int(t_out) and frac = scale * (t_out - n) (scale = min(1, ratio)): a left wing of taps on
x[n], x[n-1], ... read from its filter table at positions offset + i * index_step (offset = int(frac *
num_table), linearly interpolated with eta = frac * num_table - offset) and a right wing on x[n+1], x[n+2],
... at the positions of scale - frac; each wing has (len(table) - offset) // index_step taps
(index_step = int(scale * num_table)), and taps beyond the signal's ends are left out (= zero padding).

With sr_in / sr_out = step_in / step_out in lowest terms, output t = m * step_out + p sits at input time
m * step_in + p * step_in / step_out, so its taps depend only on its phase p: there are step_out distinct
tap vectors. This module computes them from resampy's own table with resampy's own arithmetic (for the
phase's first output, t = p) and applies them as a matrix product. Outputs whose float time makes resampy
take other integer decisions than the phase's (n one lower at an exact grid point, or one tap more or less
in a wing) are recomputed one by one with their own taps, so the result equals resampy.resample to
floating-point rounding (~1e-15) plus the drift of resampy's float time grid t * (1 / ratio), which grows
with t (below 1e-12 for a 10-minute clip at 44.1 kHz).

The filter table is read from resampy's data file without importing resampy (which imports numba).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

FILTER_NAME = "kaiser_best"  # resampy's default, as the reference uses
# A phase table holds step_out rows of about (step_in + 2 * wing) floats; beyond this many entries (32 MiB
# of float64) the table costs more to build and hold than resampy's own loop costs on a typical clip, and
# such ratios (e.g. 44.099 kHz: 16,000 phases) are rare: they go to resampy.
MAX_TABLE_ENTRIES = 1 << 22
_MIN_ROW_INPUTS = 128  # input samples per matrix row at least, so that BLAS gets wide enough products
_MIN_ROW_OUTPUTS = 64  # and output samples (both chosen by timing 8 to 96 kHz inputs)
# Bound on the relative error of resampy's float time t * (1 / ratio) against the exact t * step_in / step_out
# (the reciprocal of a rounded ratio, then a rounded product: under 1.5 * 2**-52), with a margin.
_TIME_REL_ERROR = 2.0**-50


@functools.cache
def filter_table(name: str = FILTER_NAME) -> tuple[np.ndarray, int]:
    """resampy's pre-computed filter `name`: (right half-window float64 [W], entries per zero crossing)."""
    spec = importlib.util.find_spec("resampy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("resampy is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.npz"
    with np.load(path) as data:
        return np.asarray(data["half_window"], np.float64), int(data["precision"])


@dataclass(frozen=True)
class Filter:
    """resampy's resampling arithmetic for one rate pair (sr_in / sr_out = step_in / step_out)."""

    step_in: int
    step_out: int
    time_increment: float  # resampy's 1 / (sr_out / sr_in) in float64: output t sits at t * time_increment
    scale: float  # min(1, sr_out / sr_in)
    num_table: int  # table entries per zero crossing
    index_step: int  # int(scale * num_table): table entries between taps
    interp_win: np.ndarray  # the table, times sr_out / sr_in when downsampling
    interp_delta: np.ndarray  # its forward differences (for the linear interpolation)

    @property
    def wing(self) -> int:
        """Most taps a wing can have: (len(table) - offset) // index_step is largest at offset 0."""
        return len(self.interp_win) // self.index_step

    def wing_counts(self, offset: np.ndarray) -> np.ndarray:
        """Taps of a wing that starts at table offset `offset` (int64, any shape)."""
        return (len(self.interp_win) - offset) // self.index_step

    def exact_times(self, t: np.ndarray) -> np.ndarray:
        """The exact input times t * step_in / step_out of outputs t (int64 [K]), correctly rounded."""
        return (t * self.step_in) / self.step_out

    def decisions(self, t_out: np.ndarray) -> tuple[np.ndarray, ...]:
        """resampy's decisions for outputs at input times t_out (float64 [K]): (n, offset_left,
        eta_left, offset_right, eta_right): the input sample the left wing starts at, and where each
        wing starts in the table (integer offset, interpolation fraction)."""
        n = t_out.astype(np.int64)
        frac = self.scale * (t_out - n)
        index_left = frac * self.num_table
        offset_left = index_left.astype(np.int64)
        index_right = (self.scale - frac) * self.num_table
        offset_right = index_right.astype(np.int64)
        return n, offset_left, index_left - offset_left, offset_right, index_right - offset_right

    def taps(self, t_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Taps of outputs at input times t_out (float64 [K]) as resampy's loop computes them: (n int64
        [K], taps float64 [K, 2 * wing] over inputs n - wing + 1 .. n + wing, wing tap counts int64
        [K, 2])."""
        n, offset_left, eta_left, offset_right, eta_right = self.decisions(t_out)
        wing = self.wing
        taps = np.zeros((len(t_out), 2 * wing))
        counts = np.zeros((len(t_out), 2), np.int64)
        i = np.arange(wing)
        for side, (offset, eta) in enumerate(((offset_left, eta_left), (offset_right, eta_right))):
            counts[:, side] = self.wing_counts(offset)
            valid = i < counts[:, side, None]
            index = np.where(valid, offset[:, None] + i * self.index_step, 0)
            weight = np.where(valid, self.interp_win[index] + eta[:, None] * self.interp_delta[index], 0.0)
            if side == 0:  # x[n - i] sits in column wing - 1 - i
                taps[:, wing - 1 :: -1] = weight
            else:  # x[n + 1 + i] sits in column wing + i
                taps[:, wing:] = weight
        return n, taps, counts


@functools.lru_cache(maxsize=8)
def make_filter(sr_in: int, sr_out: int) -> Filter:
    """resampy.resample's set-up for kaiser_best from sr_in to sr_out (its own float64 expressions)."""
    table, num_table = filter_table()
    gcd = math.gcd(sr_in, sr_out)
    sample_ratio = float(sr_out) / sr_in
    interp_win = sample_ratio * table if sample_ratio < 1 else table
    scale = min(1.0, sample_ratio)
    return Filter(sr_in // gcd, sr_out // gcd, 1.0 / sample_ratio, scale, num_table, int(scale * num_table),
                  interp_win, np.diff(interp_win, append=interp_win[-1]))


@dataclass(frozen=True)
class Kernel:
    """The phase taps of a rate pair as one matrix, applied to the input cut into rows of `hop` samples.

    `matrix` float64 [rows_out, chunks * hop]: row q holds the taps of output r * rows_out + q over the
    input samples r * hop - wing + 1 + s (s = column), for every row index r; one row of outputs spans
    `group` periods of step_out phases.
    """

    filter: Filter
    group: int
    matrix: np.ndarray
    row_n: np.ndarray  # int64 [rows_out]: input sample n of output q (row 0), at its exact time
    row_counts: np.ndarray  # int64 [rows_out, 2]: taps in the left and right wing of those outputs
    row_safe_until: np.ndarray  # float64 [rows_out]: below this input time every output at row position
    #                             q surely makes row 0's decisions (inf: always; 0: check each one)

    @property
    def hop(self) -> int:
        """Input samples between matrix rows."""
        return self.group * self.filter.step_in

    @property
    def rows_out(self) -> int:
        """Output samples per matrix row."""
        return self.group * self.filter.step_out


def table_entries(sr_in: int, sr_out: int) -> int:
    """Size of the phase table of a rate pair (see MAX_TABLE_ENTRIES), before grouping."""
    f = make_filter(sr_in, sr_out)
    return f.step_out * (f.step_in + 2 * f.wing)


def supported(sr_in: int, sr_out: int) -> bool:
    """Whether the polyphase path handles this rate pair (else: resampy)."""
    return sr_in != sr_out and table_entries(sr_in, sr_out) <= MAX_TABLE_ENTRIES


@functools.lru_cache(maxsize=8)
def kernel(sr_in: int, sr_out: int) -> Kernel:
    """The phase table of a rate pair (cached; ~10 ms to build at 44.1 -> 16 kHz)."""
    f = make_filter(sr_in, sr_out)
    group = max(1, -(-_MIN_ROW_INPUTS // f.step_in), -(-_MIN_ROW_OUTPUTS // f.step_out))
    rows_out, hop, wing = group * f.step_out, group * f.step_in, f.wing
    n, taps, counts = f.taps(f.exact_times(np.arange(rows_out)))
    chunks = -(-(int(n[-1]) + 2 * wing) // hop)
    matrix = np.zeros((rows_out, chunks * hop))
    for q in range(rows_out):
        matrix[q, n[q] : n[q] + 2 * wing] = taps[q]
    return Kernel(f, group, matrix, n, counts, _safe_times(f, rows_out))


def _safe_times(f: Filter, rows_out: int) -> np.ndarray:
    """For each row position q, the input time below which every output t = r * rows_out + q makes the
    same integer decisions as at its exact time (n, and each wing's tap count): resampy's float time error
    (< t_out * _TIME_REL_ERROR) cannot carry it across a decision boundary before then."""
    if Fraction(f.time_increment) == Fraction(f.step_in, f.step_out):
        return np.full(rows_out, np.inf)  # a dyadic ratio: t * time_increment is exact
    q = np.arange(rows_out)
    _, offset_left, eta_left, offset_right, eta_right = f.decisions(f.exact_times(q))
    offsets = np.arange(f.index_step + 3)
    counts = f.wing_counts(offsets)
    boundaries = offsets[1:][counts[1:] != counts[:-1]].astype(np.float64)  # a count changes here
    margin = np.full(rows_out, np.inf)
    for position in (offset_left + eta_left, offset_right + eta_right):
        if len(boundaries):
            distance = np.abs(position[:, None] - boundaries[None, :]).min(axis=1)
            margin = np.minimum(margin, (distance - 1e-9) / (f.scale * f.num_table))
    between = (q * f.step_in % f.step_out) / f.step_out  # exact position between two input samples
    margin = np.minimum(margin, np.minimum(between, 1 - between))
    return np.maximum(margin, 0.0) / _TIME_REL_ERROR


def apply(k: Kernel, x: np.ndarray, x_start: int, first_out: int, stop_out: int) -> np.ndarray:
    """Outputs [first_out, stop_out) (global output indices) from x float64 [m], the input samples
    x_start .. x_start + m - 1; samples outside x count as zeros (resampy's edges when x is the whole
    signal). Returns float64 [stop_out - first_out]."""
    if stop_out <= first_out:
        return np.zeros(0)
    hop, rows_out, wing = k.hop, k.rows_out, k.filter.wing
    chunks = k.matrix.shape[1] // hop
    first_row, stop_row = first_out // rows_out, -(-stop_out // rows_out)
    # Input samples [lo, lo + (rows + chunks - 1) * hop) as rows of `hop` samples, zero outside x.
    lo = first_row * hop - wing + 1
    rows = stop_row - first_row + chunks - 1
    window = np.zeros(rows * hop)
    a, b = max(lo, x_start), min(lo + rows * hop, x_start + len(x))
    if b > a:
        window[a - lo : b - lo] = x[a - x_start : b - x_start]
    grid = window.reshape(rows, hop)
    count = stop_row - first_row
    out = grid[:count] @ k.matrix[:, :hop].T
    for c in range(1, chunks):
        out += grid[c : c + count] @ k.matrix[:, c * hop : (c + 1) * hop].T
    y = out.reshape(-1)[first_out - first_row * rows_out : stop_out - first_row * rows_out]
    _fix_odd_outputs(k, y, x, x_start, first_out)
    return y


def _fix_odd_outputs(k: Kernel, y: np.ndarray, x: np.ndarray, x_start: int, first_out: int) -> None:
    """Recompute, with their own taps, the outputs whose float time makes resampy decide differently from
    their row position (n, or a wing's tap count); in place. Only outputs at positions that can be affected
    are looked at (for the usual ratios: those on the common grid of the two rates, 1 in step_out)."""
    f = k.filter
    stop_out = first_out + len(y)
    suspect = np.flatnonzero(k.row_safe_until < stop_out * f.time_increment)
    if not len(suspect):
        return
    t = np.concatenate([np.arange(first_out + (q - first_out) % k.rows_out, stop_out, k.rows_out)
                        for q in suspect])
    t_out = t * f.time_increment  # resampy's own float times
    n, offset_left, _, offset_right, _ = f.decisions(t_out)
    q = t % k.rows_out
    odd = ((n != t // k.rows_out * k.hop + k.row_n[q])
           | (f.wing_counts(offset_left) != k.row_counts[q, 0])
           | (f.wing_counts(offset_right) != k.row_counts[q, 1]))
    if not odd.any():
        return
    n_odd, taps, _ = f.taps(t_out[odd])
    index = n_odd[:, None] - f.wing + 1 + np.arange(2 * f.wing) - x_start
    inside = (index >= 0) & (index < len(x))
    samples = np.where(inside, x[np.clip(index, 0, max(len(x) - 1, 0))], 0.0) if len(x) else 0.0 * index
    y[t[odd] - first_out] = np.einsum("kj,kj->k", taps, samples)
