"""Trained classifier heads: the shipped AudioSet head (``load_pretrained``) and user heads (``load_head``).

A head is stored as one ``.npz`` head file, whose layout, reading and writing live in
:mod:`classifier.head_file`; :class:`Head` predicts with its members (numpy, or TF-Lite via
:mod:`classifier.lite`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from audiotag_data import data_dir
from classifier.clipset import EMBEDDING_SIZE, MAX_FRAMES, pad_clips
from classifier.head_file import (
    HeadError,
    check_rule,
    check_task,
    combine_probabilities,
    read_head,
    save_head,
)
from classifier.lite import LiteHead, check_engine

DEFAULT_HEAD = "audioset"


def heads_dir() -> Path:
    """Folder of the shipped heads: data/heads (or $AUDIOTAG_DATA_DIR/heads)."""
    return data_dir() / "heads"


def available_heads() -> list[str]:
    """Names of the shipped heads (file stems in :func:`heads_dir`)."""
    return sorted(p.stem for p in heads_dir().glob("*.npz"))


class Head:
    """A trained classifier: one or more members whose clip probabilities are combined.

    A head is its members' configs (keywords of :func:`classifier.models.build_model`) and float32 weights
    (``model.weights`` order); it predicts with numpy (:mod:`classifier.inference`), never with Keras.
    ``Head(members, member_configs, ...)`` takes Keras models (training, :func:`build_model`) and copies
    their weights; :meth:`from_weights` (used by :func:`load_head` and :func:`combine_heads`) takes the
    weights directly and never imports TensorFlow. ``class_names`` gives the C output classes in order;
    ``combine`` (one of classifier.head_file.COMBINE_RULES) says how the members' probabilities are averaged;
    ``task`` (one of classifier.head_file.TASKS) whether they are independent per class ("multilabel") or one
    distribution over the classes ("multiclass").
    """

    def __init__(self, members: Sequence, member_configs: Sequence[dict], class_names: Sequence[str],
                 name: str = "head", info: dict | None = None, combine: str = "mean_probability", *,
                 frame_members: Sequence = (), frame_member_configs: Sequence[dict] = (),
                 timeline: dict | None = None, event_rules: dict | None = None, task: str = "multilabel"):
        weights = [[np.asarray(w, np.float32) for w in model.weights] for model in members]
        frame_weights = [[np.asarray(w, np.float32) for w in model.weights] for model in frame_members]
        self._setup(member_configs, weights, class_names, name, info, combine, task)
        self._setup_timeline(frame_member_configs, frame_weights, timeline, event_rules)

    @classmethod
    def from_weights(cls, member_configs: Sequence[dict], member_weights: Sequence[Sequence[np.ndarray]],
                     class_names: Sequence[str], name: str = "head", info: dict | None = None,
                     combine: str = "mean_probability", *, frame_member_configs: Sequence[dict] = (),
                     frame_member_weights: Sequence[Sequence[np.ndarray]] = (), timeline: dict | None = None,
                     event_rules: dict | None = None, task: str = "multilabel") -> Head:
        """A head from member configs and their weight arrays (``model.weights`` order, any float dtype).
        ValueError when a member's weights do not fit its config, or the members do not fit the task."""
        head = cls.__new__(cls)
        head._setup(member_configs, member_weights, class_names, name, info, combine, task)
        head._setup_timeline(frame_member_configs, frame_member_weights, timeline, event_rules)
        return head

    def _setup_timeline(self, frame_member_configs: Sequence[dict],
                        frame_member_weights: Sequence[Sequence[np.ndarray]], timeline: dict | None,
                        event_rules: dict | None) -> None:
        from classifier.inference import Member
        from classifier.timeline import TimelineParams

        if len(frame_member_weights) != len(frame_member_configs):
            raise ValueError("a head needs one config per frame member")
        self.frame_member_configs = [dict(c) for c in frame_member_configs]
        self.frame_member_weights = [[np.asarray(w, np.float32) for w in ws] for ws in frame_member_weights]
        pairs = zip(self.frame_member_configs, self.frame_member_weights, strict=True)
        self._frame_members = [Member(c, w) for c, w in pairs]
        if not all(m.has_frames for m in self._frame_members):
            raise ValueError("frame members must be decision-level models")
        self.timeline = TimelineParams.from_config(timeline)
        self.event_rules = dict(event_rules) if event_rules else None

    def _setup(self, member_configs: Sequence[dict], member_weights: Sequence[Sequence[np.ndarray]],
               class_names: Sequence[str], name: str, info: dict | None, combine: str, task: str) -> None:
        from classifier.inference import Member

        if not member_configs or len(member_weights) != len(member_configs):
            raise ValueError("a head needs at least one member and one config per member")
        self.combine = check_rule(combine)
        self.task = check_task(task, member_configs, combine)
        self.member_configs = [dict(c) for c in member_configs]
        self.member_weights = [[np.asarray(w, np.float32) for w in ws] for ws in member_weights]
        self.class_names = list(class_names)
        self.name = name
        self.info = dict(info or {})
        self._members = [Member(config, weights)
                         for config, weights in zip(self.member_configs, self.member_weights, strict=True)]
        self._keras_members: list | None = None
        self.engine = "numpy"
        self.engine_threads: int | None = None
        self._lite = None

    def with_engine(self, engine: str, *, threads: int | None = None) -> Head:
        """A copy of this head (sharing its weights) that predicts with `engine`, one of
        classifier.lite.ENGINES: "numpy" (the reference), "lite" (TF-Lite float32) or "lite-int8" (TF-Lite
        with int8 weights, the fastest). The TF-Lite graph is compiled, or read from the cache, on the first
        prediction; ``threads``: its interpreter's threads (default: all cores)."""
        head = copy.copy(self)
        head.engine = check_engine(engine)
        head.engine_threads = threads
        head._lite = None
        return head

    def _lite_head(self):
        """The compiled TF-Lite head of ``self.engine`` (built on first use)."""
        if self._lite is None:
            self._lite = LiteHead(self, self.engine, threads=self.engine_threads)
        return self._lite

    def __getstate__(self) -> dict:
        """Pickled without the Keras models and the TF-Lite interpreter (rebuilt on first use)."""
        return self.__dict__ | {"_keras_members": None, "_lite": None}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def members(self) -> list:
        """The members as Keras models, built from the weights on first use (imports TensorFlow): for
        fine-tuning or inspection; predictions never use them."""
        if self._keras_members is None:
            from classifier.models import build_model

            self._keras_members = []
            for config, weights in zip(self.member_configs, self.member_weights, strict=True):
                model = build_model(**config)
                model.set_weights(weights)
                self._keras_members.append(model)
        return self._keras_members

    def predict_arrays(self, x: np.ndarray, mask: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Clip probabilities float32 [N, C] for padded x [N, T, 128] (uint8 values) and mask bool [N, T]."""
        if self.engine != "numpy":
            return self._lite_head().clip_probs(np.asarray(x), np.asarray(mask))
        return self._run([m.clip_probs for m in self._members], x, mask, batch_size)

    def predict_clips(self, clips: Sequence[np.ndarray], batch_size: int = 1024) -> np.ndarray:
        """Clip probabilities float32 [N, C]; each clip is uint8 [T, 128] with 1 <= T <= 10."""
        x, mask = pad_clips(_check_clips(clips))
        return self.predict_arrays(x, mask, batch_size)

    def predict_frames(self, clips: Sequence[np.ndarray], batch_size: int = 1024) -> list[np.ndarray]:
        """Calibrated per-patch scores, one float32 [T, C] per clip, comparable across clips and files: the
        clip probability spread over the patches by the raw frame probabilities' within-clip localization
        (:func:`classifier.timeline.calibrate_frames` with ``self.timeline``)."""
        return self.predict_timeline(clips, batch_size)[1]

    def predict_timeline(self, clips: Sequence[np.ndarray], batch_size: int = 1024
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Clip probabilities float32 [N, C] and the calibrated frame scores of :meth:`predict_frames`."""
        from classifier.timeline import calibrate_frames

        clips = _check_clips(clips)
        clip_probs = self.predict_clips(clips, batch_size)
        raw = self.predict_frames_raw(clips, batch_size)
        frames = [calibrate_frames(p, f, self.timeline) for p, f in zip(clip_probs, raw, strict=True)]
        return clip_probs, frames

    def predict_frames_raw(self, clips: Sequence[np.ndarray], batch_size: int = 1024) -> list[np.ndarray]:
        """Uncalibrated frame scores, one float32 [T, C] in [0, 1] per clip (use them only within a clip).

        From the frame members when the head has them, else from its decision-level members (combined by
        the head's rule): their frame probabilities, those of attention members weighted by the frames'
        attention weights ** ``self.timeline.attention_exponent``. A head with neither (e.g. only
        feature-level attention) scores each patch as a one-patch clip.
        """
        clips = _check_clips(clips)
        if not clips:
            return []
        members = self._frame_members or [m for m in self._members if m.has_frames]
        if not members:  # every patch as a one-patch clip, [P, 1, 128]
            patches = np.concatenate(clips)[:, None, :]
            probs = self.predict_arrays(patches, np.ones(patches.shape[:2], bool), batch_size)
            return np.split(probs, np.cumsum([len(c) for c in clips])[:-1])
        x, mask = pad_clips(clips)
        if self.engine != "numpy":
            probs = self._lite_head().frame_probs(x, mask)
            return [p[: len(c)] for p, c in zip(probs, clips, strict=True)]
        exponent = self.timeline.attention_exponent
        probs = self._run([partial(m.frame_probs, attention_exponent=exponent) for m in members], x, mask,
                          batch_size)
        return [p[: len(c)] for p, c in zip(probs, clips, strict=True)]

    def _run(self, fns: list, x: np.ndarray, mask: np.ndarray, batch_size: int) -> np.ndarray:
        outs = []
        for i in range(0, len(x), batch_size):
            xb = np.asarray(x[i : i + batch_size], dtype=np.float32)
            mb = np.asarray(mask[i : i + batch_size], dtype=np.float32)
            outs.append(combine_probabilities([fn(xb, mb) for fn in fns], self.combine))
        if not outs:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(outs).astype(np.float32)

    def subset(self, members: Sequence[int], name: str) -> Head:
        """A head of some of this head's members (indices into ``member_configs``), e.g. a faster one; the
        combine rule, frame members, timeline and event rules are kept (event thresholds were chosen for
        the whole head: refit them with research/fit_postprocessing.py)."""
        if not members or not all(0 <= i < len(self.member_configs) for i in members):
            raise ValueError(f"member indices must be in 0..{len(self.member_configs) - 1}, "
                             f"got {list(members)}")
        info = self.info | {"subset_of": self.name, "subset_members": list(members)}
        return Head.from_weights([self.member_configs[i] for i in members],
                                 [self.member_weights[i] for i in members], self.class_names, name, info,
                                 self.combine, frame_member_configs=self.frame_member_configs,
                                 frame_member_weights=self.frame_member_weights,
                                 timeline=self.timeline.to_config(), event_rules=self.event_rules,
                                 task=self.task).with_engine(self.engine, threads=self.engine_threads)

    def with_frame_members(self, source: Head) -> Head:
        """A copy of this head whose timeline comes from ``source``'s decision-level members (stored as
        frame members; clip scores are unchanged). ValueError when ``source`` has none or other classes."""
        from classifier.inference import DECISION_LEVEL_KINDS

        if source.class_names != self.class_names:
            raise ValueError(f"head {source.name!r} scores other classes than {self.name!r}")
        pairs = [(c, w) for c, w in zip(source.member_configs, source.member_weights, strict=True)
                 if c["kind"] in DECISION_LEVEL_KINDS]
        if not pairs:
            raise ValueError(f"head {source.name!r} has no decision-level member to give frame scores")
        return Head.from_weights(self.member_configs, self.member_weights, self.class_names, self.name,
                                 self.info, self.combine, frame_member_configs=[c for c, _ in pairs],
                                 frame_member_weights=[w for _, w in pairs],
                                 timeline=self.timeline.to_config(), event_rules=self.event_rules,
                                 task=self.task).with_engine(self.engine, threads=self.engine_threads)

    def save(self, path: str | os.PathLike[str], dtype: str = "float32") -> Path:
        """Write the head atomically as one .npz (weights stored as ``dtype``: one of
        classifier.head_file.WEIGHT_DTYPES)."""
        return save_head(path, self.member_configs, self.member_weights, self.class_names, self.name,
                         self.info, dtype, self.combine, frame_member_configs=self.frame_member_configs,
                         frame_member_weights=self.frame_member_weights, timeline=self.timeline.to_config(),
                         event_rules=self.event_rules, task=self.task)


def combine_heads(heads: Sequence[Head], name: str, info: dict | None = None,
                  combine: str = "mean_probability") -> Head:
    """One head averaging all members of ``heads`` by ``combine`` (an ensemble); they must share their
    class list and task. Every member weighs the same, so a 2-snapshot head counts twice.

    ``info`` records provenance; each source head's name and info are kept under ``info["sources"]``.
    """
    if not heads:
        raise ValueError("combine_heads needs at least one head")
    for head in heads[1:]:
        if head.class_names != heads[0].class_names:
            raise HeadError(f"cannot combine head {head.name!r}: its classes differ from {heads[0].name!r}")
        if head.task != heads[0].task:
            raise HeadError(f"cannot combine head {head.name!r} ({head.task}) with {heads[0].name!r} "
                            f"({heads[0].task})")
    sources = [{"name": h.name, "info": h.info} for h in heads]
    return Head.from_weights([c for h in heads for c in h.member_configs],
                             [w for h in heads for w in h.member_weights],
                             heads[0].class_names, name, dict(info or {}) | {"sources": sources}, combine,
                             task=heads[0].task)


def load_head(path: str | os.PathLike[str], engine: str = "numpy") -> Head:
    """Load a head file written by :func:`classifier.head_file.save_head` / :meth:`Head.save` / training (no
    TensorFlow), predicting with `engine` (:meth:`Head.with_engine`); HeadError when it is not usable."""
    stored = read_head(path)
    try:
        head = Head.from_weights(stored.member_configs, stored.member_weights, stored.class_names,
                                 stored.name, stored.info, stored.combine,
                                 frame_member_configs=stored.frame_member_configs,
                                 frame_member_weights=stored.frame_member_weights, timeline=stored.timeline,
                                 event_rules=stored.event_rules, task=stored.task)
    except (TypeError, ValueError) as exc:
        raise HeadError(f"{Path(path)}: bad timeline settings ({exc})") from exc
    return head if engine == "numpy" else head.with_engine(engine)


def load_pretrained(name: str | None = None, engine: str = "numpy") -> Head:
    """Load a shipped head by name (default: the AudioSet head trained on balanced-train), predicting
    with `engine` (:meth:`Head.with_engine`; "lite-int8" is several times faster than "numpy")."""
    name = name or DEFAULT_HEAD
    path = heads_dir() / f"{name}.npz"
    if not path.is_file():
        raise HeadError(f"{path}: no shipped head named {name!r}; available: {available_heads()}")
    return load_head(path, engine)


def _check_clips(clips: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, clip in enumerate(clips):
        a = np.asarray(clip)
        if a.ndim != 2 or a.shape[1] != EMBEDDING_SIZE or not 1 <= a.shape[0] <= MAX_FRAMES:
            raise ValueError(f"clip {i}: expected shape (T, {EMBEDDING_SIZE}) with 1 <= T <= {MAX_FRAMES}, "
                             f"got {a.shape}")
        out.append(a)
    return out
