"""Training on a user's labelled clips: tasks, the linear probe, softmax members, the task in the head file,
single-label metrics, the evaluation splits, the one-standard-error choice and classifier.autotrain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classifier.clipset import ClipSet
from classifier.crossval import (
    AUTO_MODEL,
    LINEAR,
    SMALL_DATA_CLIPS,
    CandidateResult,
    choose,
    plan_evaluation,
)
from classifier.evaluate import REPORT_FILES, SINGLE_LABEL_FILES
from classifier.head_file import HeadError, check_task, combine_windows, read_head, save_head
from classifier.inference import MODEL_KINDS, Member
from classifier.linear_probe import PROBE_C, fit_linear
from classifier.metrics import class_metrics
from classifier.tasks import TaskError, resolve_task
from classifier.train import TrainError

C = 4
TINY = {"hidden_units": 8, "num_layers": 2, "batch_size": 8, "iterations": 4, "checkpoint_every": 2}


def _clusters(per_class: int, classes: int = C, seed: int = 0, labels_per_clip: int = 1) -> ClipSet:
    """Clips whose frames scatter around one centre per label (separable), 3-10 frames each."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(40, 216, (classes, 128))
    n = per_class * classes
    y = np.zeros((n, classes), bool)
    for i in range(n):
        y[i, i % classes] = True
        if labels_per_clip > 1:
            y[i, rng.choice(classes, labels_per_clip - 1)] = True
    x = np.zeros((n, 10, 128), np.uint8)
    mask = np.zeros((n, 10), bool)
    for i in range(n):
        t = rng.integers(3, 11)
        centre = centres[y[i]].mean(axis=0)
        x[i, :t] = np.clip(centre + rng.normal(0, 25, (t, 128)), 0, 255)
        mask[i, :t] = True
    ids = np.array([f"clip{i:03d}" for i in range(n)])
    return ClipSet(x=x, mask=mask, y=y, ids=ids, class_names=[f"class {k}" for k in range(classes)])


def _mean_pooled(data: ClipSet) -> np.ndarray:
    m = data.mask[..., None]
    return (data.x * m).sum(axis=1) / m.sum(axis=1)


def test_tasks_are_resolved_from_the_labels_and_checked() -> None:
    one = np.eye(3, dtype=bool)[[0, 1, 2, 1]]
    assert resolve_task(one) == "multiclass" and resolve_task(one, "multilabel") == "multilabel"
    several = one.copy()
    several[0, 1] = True
    assert resolve_task(several) == "multilabel"
    with pytest.raises(TaskError, match="one label per clip, but 1 clips have several and 0 have none"):
        resolve_task(several, "multiclass", "labels.csv")
    with pytest.raises(TaskError, match="task must be one of"):
        resolve_task(one, "binary")


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_linear_probe_equals_scikit_learn_on_standardised_means(task: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = _clusters(8, labels_per_clip=1 if task == "multiclass" else 2)
    config, weights = fit_linear(data.x, data.mask, data.y, task)
    softmax = {"output": "softmax"} if task == "multiclass" else {}
    assert config == {"kind": LINEAR, "num_classes": C} | softmax
    ours = Member(config, weights).clip_probs(data.x.astype(np.float32), data.mask.astype(np.float32))
    features = StandardScaler().fit_transform(_mean_pooled(data))
    if task == "multiclass":
        probe = LogisticRegression(C=PROBE_C, max_iter=1000).fit(features, data.y.argmax(axis=1))
        want = probe.predict_proba(features)
    else:
        want = np.stack([LogisticRegression(C=PROBE_C, max_iter=1000).fit(features, data.y[:, k])
                         .predict_proba(features)[:, 1] for k in range(C)], axis=1)
    np.testing.assert_allclose(ours, want, rtol=0, atol=1e-5)


def test_linear_probe_of_two_classes_and_of_classes_without_clips() -> None:
    data = _clusters(6, classes=2)
    y = np.zeros((len(data), 3), bool)
    y[:, :2] = data.y  # a third class no clip has
    config, weights = fit_linear(data.x, data.mask, y, "multiclass")
    probs = Member(config, weights).clip_probs(data.x.astype(np.float32), data.mask.astype(np.float32))
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    assert probs[:, 2].max() < 1e-6 and (probs.argmax(axis=1) == data.y.argmax(axis=1)).mean() > 0.9
    config, weights = fit_linear(data.x, data.mask, y | np.eye(3, dtype=bool)[[0]], "multilabel")
    probs = Member(config, weights).clip_probs(data.x.astype(np.float32), data.mask.astype(np.float32))
    assert probs[:, 2].max() < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_softmax_members_equal_keras_and_give_one_distribution(kind: str) -> None:
    import keras

    from classifier.inference import weight_layout
    from classifier.models import build_model, frame_model

    config = {"kind": kind, "num_classes": C, "hidden_units": 16, "num_layers": 2, "output": "softmax"}
    keras.utils.set_random_seed(3)
    model = build_model(**config)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) if "variance" not in w.path
                       else rng.uniform(0.5, 2, w.shape).astype(np.float32) for w in model.weights])
    assert [(w.path, tuple(w.shape)) for w in model.weights] == weight_layout(**config)
    member = Member(config, [np.asarray(w) for w in model.weights])
    x = rng.integers(0, 256, (6, 10, 128)).astype(np.float32)
    mask = (np.arange(10) < rng.integers(1, 11, 6)[:, None]).astype(np.float32)
    ours = member.clip_probs(x, mask)
    np.testing.assert_allclose(ours, np.asarray(model({"x": x, "mask": mask}, training=False)), atol=1e-5)
    np.testing.assert_allclose(ours.sum(axis=1), 1, atol=1e-5)
    if member.has_frames:
        frames = member.frame_probs(x, mask)
        np.testing.assert_allclose(frames, np.asarray(frame_model(model)({"x": x, "mask": mask})), atol=1e-5)
        np.testing.assert_allclose(frames.sum(axis=-1), 1, atol=1e-5)


def test_head_file_records_the_task_and_checks_the_members(tmp_path) -> None:
    data = _clusters(4)
    config, weights = fit_linear(data.x, data.mask, data.y, "multiclass")
    path = save_head(tmp_path / "h.npz", [config], [weights], data.class_names, "h", task="multiclass")
    stored = read_head(path)
    assert stored.task == "multiclass" and stored.class_names == data.class_names
    with pytest.raises(ValueError, match="a multilabel head needs sigmoid members; member\\(s\\) \\[0\\]"):
        save_head(tmp_path / "x.npz", [config], [weights], data.class_names, "x")
    with pytest.raises(ValueError, match="combines its members by mean_probability, not 'mean_logit'"):
        check_task("multiclass", [config], "mean_logit")
    arrays = dict(np.load(path))
    settings = json.loads(str(arrays["config"]))
    settings["task"] = "multilabel"
    arrays["config"] = np.array(json.dumps(settings))
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(HeadError, match=r"broken.npz: a multilabel head needs sigmoid members"):
        read_head(tmp_path / "broken.npz")
    del settings["task"]  # a head file written before the task was recorded is multi-label
    sigmoid, sigmoid_weights = fit_linear(data.x, data.mask, data.y, "multilabel")
    save_head(tmp_path / "old.npz", [sigmoid], [sigmoid_weights], data.class_names, "old")
    arrays = dict(np.load(tmp_path / "old.npz"))
    old = json.loads(str(arrays["config"]))
    del old["task"]
    arrays["config"] = np.array(json.dumps(old))
    np.savez(tmp_path / "old.npz", **arrays)
    assert read_head(tmp_path / "old.npz").task == "multilabel"


def test_heads_of_other_tasks_do_not_combine(tmp_path) -> None:
    from classifier.pretrained import Head, combine_heads

    data = _clusters(4)
    heads = [Head.from_weights([c], [w], data.class_names, task=task)
             for task in ("multiclass", "multilabel")
             for c, w in [fit_linear(data.x, data.mask, data.y, task)]]
    with pytest.raises(HeadError, match="\\(multilabel\\) with 'head' \\(multiclass\\)"):
        combine_heads(heads, "both")
    same = combine_heads([heads[0], heads[0]], "twice")
    assert same.task == "multiclass" and same.subset([0], "one").task == "multiclass"
    assert Head.from_weights(same.member_configs, same.member_weights, same.class_names,
                             task="multiclass").predict_clips(data.clips()).sum(axis=1) == pytest.approx(1)


def test_windows_combine_by_maximum_or_mean_distribution() -> None:
    windows = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    np.testing.assert_allclose(combine_windows(windows), [0.7, 0.2, 0.8])
    np.testing.assert_allclose(combine_windows(windows, "multiclass"), [0.4, 0.15, 0.45])


def test_class_metrics_equal_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = np.random.default_rng(0)
    for _ in range(30):
        classes, n = rng.integers(2, 6), rng.integers(1, 30)
        truth = rng.integers(0, classes, n)
        scores = rng.random((n, classes))
        m = class_metrics(np.eye(classes, dtype=bool)[truth], scores)
        predicted = scores.argmax(axis=1)
        assert m.accuracy == pytest.approx(accuracy_score(truth, predicted))
        assert m.macro_f1 == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))
        np.testing.assert_array_equal(m.confusion, confusion_matrix(truth, predicted, labels=range(classes)))
    with pytest.raises(ValueError, match="exactly one label per clip"):
        class_metrics(np.ones((2, 2), bool), np.ones((2, 2)))


def test_small_sets_are_cross_validated_and_large_ones_hold_out_a_part() -> None:
    y = np.eye(3, dtype=bool)[np.arange(30) % 3]
    plan = plan_evaluation(y)
    assert plan.scheme == "stratified 5-fold cross-validation" and len(plan.splits) == 5
    tested = np.concatenate([test for _, test in plan.splits])
    assert sorted(tested) == list(range(30))  # every clip scored once
    for train, test in plan.splits:
        assert not set(train) & set(test) and (y[test].sum(axis=0) == 2).all()
    few = plan_evaluation(np.eye(3, dtype=bool)[[0, 0, 0, 1, 1, 1, 2, 2, 2]], folds=5)
    assert len(few.splits) == 3 and "smallest class has 3 clips" in few.scheme
    large = np.eye(2, dtype=bool)[np.arange(2 * SMALL_DATA_CLIPS) % 2]
    held_out = plan_evaluation(large)
    assert len(held_out.splits) == 1 and "held-out" in held_out.scheme
    assert len(plan_evaluation(large, folds=4).splits) == 4  # asked for: cross-validated anyway
    with pytest.raises(TrainError, match="1 class\\(es\\) have fewer than 2 clips"):
        plan_evaluation(np.eye(2, dtype=bool)[[0, 0, 1]])
    with pytest.raises(TrainError, match="at least 2 folds, got 1"):
        plan_evaluation(y, folds=1)


def _result(name: str, correct: np.ndarray, y: np.ndarray) -> CandidateResult:
    """A candidate whose predictions are right exactly where ``correct`` is True (one split)."""
    truth = y.argmax(axis=1)
    predicted = np.where(correct, truth, (truth + 1) % y.shape[1])
    oof = np.eye(y.shape[1], dtype=np.float32)[predicted]
    return CandidateResult(name, [{"accuracy": float(correct.mean()), "macro_F1": 0.0}], oof, 0.1)


def test_the_simpler_model_is_kept_unless_a_complex_one_wins_by_more_than_one_standard_error() -> None:
    y = np.eye(2, dtype=bool)[np.arange(100) % 2]
    rng = np.random.default_rng(0)
    linear = rng.random(100) < 0.7
    close = linear.copy()
    close[np.flatnonzero(~linear)[:5]] = True
    close[np.flatnonzero(linear)[:3]] = False  # 5 gained, 3 lost: within the error of the difference
    name, why = choose([_result("linear", linear, y), _result("single_attention", close, y)], "multiclass", y)
    assert name == "linear" and "within one standard error" in why
    clear = linear | (rng.random(100) < 0.8)
    name, why = choose([_result("linear", linear, y), _result("single_attention", clear, y)], "multiclass", y)
    assert name == "single_attention" and "beats linear by more than one standard error" in why


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_autotrain_chooses_refits_writes_the_head_and_the_report_and_reuses_runs(tmp_path, task: str) -> None:
    from classifier.autotrain import autotrain
    from classifier.pretrained import load_head

    data = _clusters(6, labels_per_clip=1 if task == "multiclass" else 2)
    result = autotrain(data, tmp_path / "run", folds=3, settings=TINY)
    assert result.task == task and result.chosen == LINEAR  # separable: the probe is the simplest winner
    head = load_head(result.head_path)
    assert head.task == task and head.class_names == data.class_names
    assert head.info["chosen"] == LINEAR and head.info["comparison"][0]["model"] == LINEAR
    assert head.event_rules is not None  # uniform thresholds: events work without a warning
    report = result.report_dir
    summary = json.loads((report / "summary.json").read_text())
    assert summary["chosen"] == LINEAR and summary["evaluation"] == "stratified 3-fold cross-validation"
    expected = {"report.html", "cv.csv", *REPORT_FILES}
    if task == "multiclass":
        expected |= set(SINGLE_LABEL_FILES)
        assert summary["accuracy"] > 0.9 and "macro_F1" in summary
    assert expected <= {p.name for p in report.iterdir()}
    page = (report / "report.html").read_text()
    assert "Chosen model: linear" in page and "feature_attention" in page
    assert "http" not in page.split("<body>")[1]  # self-contained
    runs = sorted((tmp_path / "run" / "training").glob("*/cv/*/split*/head.npz"))
    assert len(runs) == 3 * 3  # three attention models, three splits each
    stamps = [p.stat().st_mtime_ns for p in runs]
    again = autotrain(data, tmp_path / "run", folds=3, settings=TINY)  # the rerun reuses every finished run
    assert [p.stat().st_mtime_ns for p in runs] == stamps and again.chosen == result.chosen
    autotrain(data, tmp_path / "run", folds=2, settings=TINY)  # other splits: a new key, the old one removed
    assert len(list((tmp_path / "run" / "training").iterdir())) == 1


@pytest.mark.slow
def test_a_named_model_is_still_cross_validated_and_bad_settings_are_refused(tmp_path) -> None:
    from classifier.autotrain import autotrain

    data = _clusters(4)
    result = autotrain(data, tmp_path / "run", model="single_attention", folds=2, settings=TINY)
    assert result.chosen == "single_attention" and [r.name for r in result.results] == ["single_attention"]
    assert "only candidate" in result.reason
    with pytest.raises(TrainError, match="chosen by the cross-validation itself: \\['eval_every'\\]"):
        autotrain(data, tmp_path / "other", model=AUTO_MODEL, folds=2, settings=TINY | {"eval_every": 2})
    with pytest.raises(TrainError, match="model must be 'auto' or one of"):
        autotrain(data, tmp_path / "other", model="svm")
    with pytest.raises(TrainError, match="multi_attention: multi_attention needs num_layers >= 2"):
        autotrain(data, tmp_path / "other", folds=2, settings=TINY | {"num_layers": 1})
    assert not (tmp_path / "other" / "head.npz").exists()


@pytest.mark.slow
def test_user_heads_run_on_the_lite_engines_as_on_numpy(tmp_path, monkeypatch) -> None:
    """A linear probe and a softmax attention member (multiclass) and a sigmoid probe (multilabel) compiled to
    TF-Lite: clip probabilities and raw frames equal numpy's."""
    import keras

    from classifier.models import build_model
    from classifier.pretrained import Head

    monkeypatch.setenv("AUDIOTAG_HOME", str(tmp_path))
    data = _clusters(5)
    keras.utils.set_random_seed(0)
    single = {"kind": "single_attention", "num_classes": C, "hidden_units": 16, "num_layers": 1,
              "output": "softmax"}
    linear, weights = fit_linear(data.x, data.mask, data.y, "multiclass")
    attention = [np.asarray(w) for w in build_model(**single).weights]
    heads = [Head.from_weights([linear, single], [weights, attention], data.class_names, task="multiclass"),
             Head.from_weights(*[[part] for part in fit_linear(data.x, data.mask, data.y, "multilabel")],
                               data.class_names)]
    clips = data.clips()
    for head in heads:
        lite_head = head.with_engine("lite")
        np.testing.assert_allclose(lite_head.predict_clips(clips), head.predict_clips(clips), atol=1e-5)
        for ours, theirs in zip(lite_head.predict_frames_raw(clips[:5]), head.predict_frames_raw(clips[:5]),
                                strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-5)
