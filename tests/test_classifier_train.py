"""Balanced sampling, the held-out split, and the training loop (learning, resume, head output)."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from classifier.clipset import ClipSet
from classifier.sampling import BalancedSampler, holdout_split, kfold_split


def _one_per_class(num_classes: int, per_class: int) -> np.ndarray:
    y = np.zeros((num_classes * per_class, num_classes), dtype=bool)
    y[np.arange(len(y)), np.arange(len(y)) % num_classes] = True
    return y


def test_balanced_sampler_cycles_over_all_classes():
    y = _one_per_class(7, per_class=5)
    y[:, 3] = False  # a class without positives is never asked for
    y[3, 3] = True
    sampler = BalancedSampler(y, batch_size=7, seed=0)
    seen = np.zeros(7, dtype=int)
    for _ in range(20):
        batch = sampler.next_batch()
        assert len(batch) == 7
        counts = y[batch].sum(axis=0)
        assert counts.max() <= 2  # each batch takes one permutation of the classes
        seen += counts
    # after 20 batches of 7 slots over 7 classes every class was drawn 20 times (+ co-labels of row 3)
    assert seen.min() >= 20 and seen[[0, 1, 2, 4, 5, 6]].tolist() == [20] * 6


def test_balanced_sampler_wraps_rare_classes_and_rebalances():
    y = np.zeros((101, 2), dtype=bool)
    y[:100, 0] = True
    y[100, 1] = True  # one clip for class 1
    sampler = BalancedSampler(y, batch_size=10, seed=1)
    batches = np.concatenate([sampler.next_batch() for _ in range(50)])
    assert len(batches) == 500
    frac_rare = np.mean(batches == 100)
    assert 0.45 < frac_rare < 0.55


def test_balanced_sampler_state_round_trip():
    y = np.random.default_rng(0).random((60, 9)) < 0.2
    a = BalancedSampler(y, batch_size=16, seed=3)
    for _ in range(5):
        a.next_batch()
    state = a.get_state()
    expected = [a.next_batch() for _ in range(10)]
    b = BalancedSampler(y, batch_size=16, seed=99)
    b.set_state(state)
    for e in expected:
        np.testing.assert_array_equal(b.next_batch(), e)


def test_holdout_split_is_seeded_disjoint_and_stratified():
    y = _one_per_class(10, per_class=20)
    train, held = holdout_split(y, 0.1, seed=0)
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == len(y)
    assert len(held) == 20
    assert y[held].sum(axis=0).tolist() == [2] * 10  # every class represented in proportion
    again = holdout_split(y, 0.1, seed=0)
    np.testing.assert_array_equal(again[1], held)
    assert not np.array_equal(holdout_split(y, 0.1, seed=1)[1], held)


def test_kfold_split_partitions_evenly_and_stratifies_every_label():
    rng = np.random.default_rng(3)
    y = _one_per_class(12, per_class=15)
    y |= rng.random(y.shape) < 0.15  # multi-label: every clip has other labels than its rarest
    parts = kfold_split(y, 5, seed=0)
    assert len(parts) == 5
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))  # each row once
    assert {len(p) for p in parts} == {len(y) // 5}
    assert all(np.array_equal(p, np.sort(p)) for p in parts)
    per_fold = np.stack([y[p].sum(axis=0) for p in parts])  # [folds, classes]
    deviation = np.abs(per_fold - y.sum(axis=0) / 5)
    random_parts = np.array_split(rng.permutation(len(y)), 5)
    random_deviation = np.abs(np.stack([y[p].sum(axis=0) for p in random_parts]) - y.sum(axis=0) / 5)
    assert deviation.max() <= 3 and deviation.mean() < random_deviation.mean() / 2  # every label stratified
    for again, part in zip(kfold_split(y, 5, seed=0), parts, strict=True):
        np.testing.assert_array_equal(again, part)
    assert not np.array_equal(kfold_split(y, 5, seed=1)[0], parts[0])
    sizes = {len(p) for p in kfold_split(y[:-2], 4)}  # 178 rows: sizes 45, 45, 44, 44
    assert sizes == {44, 45}
    with pytest.raises(ValueError, match="at least 2"):
        kfold_split(y, 1)
    with pytest.raises(ValueError, match="cannot fill"):
        kfold_split(y[:3], 4)


def test_k_fold_runs_hold_out_disjoint_folds_that_cover_every_clip():
    from classifier.train import TrainError, split_holdout

    data = _toy_clipset(n=103)
    shuffled = data.subset(np.random.default_rng(0).permutation(len(data)))
    held = []
    for fold in range(4):
        train_set, holdout = split_holdout(_config(None, folds=4, fold=fold), shuffled)
        assert len(train_set) + len(holdout) == len(data)
        assert not set(train_set.ids) & set(holdout.ids)
        held += list(holdout.ids)
    assert sorted(held) == sorted(data.ids)  # every clip held out exactly once, whatever the order
    for bad in ({"folds": 4, "fold": 4}, {"folds": 1, "fold": 0}, {"fold": 2}):
        with pytest.raises(TrainError, match="fold"):
            _config(None, **bad).check()


def _toy_clipset(n: int = 400, num_classes: int = 4, seed: int = 0) -> ClipSet:
    """Each class adds a fixed pattern to the frames of its clips: learnable from the embeddings."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0, 40, (num_classes, 128))
    y = rng.random((n, num_classes)) < 0.3
    y[np.arange(n), rng.integers(0, num_classes, n)] = True
    lengths = rng.integers(3, 11, n)
    mask = np.arange(10)[None, :] < lengths[:, None]
    x = 128 + rng.normal(0, 20, (n, 10, 128)) + (y.astype(float) @ patterns)[:, None, :]
    x = np.clip(np.round(x), 0, 255).astype(np.uint8) * mask[..., None].astype(np.uint8)
    return ClipSet(x=x, mask=mask, y=y, ids=np.array([f"c{i}" for i in range(n)]),
                   class_names=[f"k{i}" for i in range(num_classes)])


def _config(tmp_path, **kw):
    from classifier.train import TrainConfig

    base = {"out_dir": str(tmp_path / "run") if tmp_path else "runs/unused", "kind": "single_attention",
            "hidden_units": 16, "batch_size": 32, "iterations": 40, "eval_every": 10, "checkpoint_every": 10,
            "holdout_fraction": 0.2, "learning_rate": 3e-3, "progress": False}
    return TrainConfig(**(base | kw))


@pytest.mark.slow
def test_training_learns_a_toy_problem_and_writes_a_head(tmp_path):
    from classifier.pretrained import load_head
    from classifier.train import train_clipset

    data = _toy_clipset()
    config = _config(tmp_path, snapshots=2, mixup_alpha=0.2, lr_schedule="cosine", learning_rate=1e-2)
    path = train_clipset(config, data)
    run = tmp_path / "run"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [10, 20, 30, 40]
    assert float(rows[-1]["train_loss"]) < 0.9 * float(rows[0]["train_loss"])
    assert max(float(r["holdout_mAP"]) for r in rows) > 0.9
    assert (run / "curve.png").stat().st_size > 1000
    head = load_head(path)
    assert len(head.members) == 2 and head.class_names == data.class_names
    assert len(head.info["snapshot_iterations"]) == 2 and head.info["holdout_mAP"] > 0.9
    probs = head.predict_clips(data.clips()[:50])
    assert probs.shape == (50, 4)


@pytest.mark.slow
def test_resume_after_interrupt_gives_identical_weights(tmp_path):
    from classifier.train import Trainer, split_holdout

    data = _toy_clipset(n=200)
    straight_cfg = _config(tmp_path / "a", iterations=8, eval_every=4, checkpoint_every=4, mixup_alpha=0.4)
    train_set, holdout = split_holdout(straight_cfg, data)
    straight = Trainer(straight_cfg, train_set, holdout)
    straight.run()

    cfg = _config(tmp_path / "b", iterations=8, eval_every=4, checkpoint_every=4, mixup_alpha=0.4)
    first = Trainer(cfg, train_set, holdout)
    calls = {"n": 0}
    real_next = first.batches.next

    def interrupted_next():
        calls["n"] += 1
        if calls["n"] == 7:  # after the checkpoint at iteration 4, mid-way to 8
            raise KeyboardInterrupt
        return real_next()

    first.batches.next = interrupted_next
    with pytest.raises(KeyboardInterrupt):
        first.run()
    resumed = Trainer(cfg, train_set, holdout)
    resumed.run()
    assert resumed.iteration == 8
    for a, b in zip(straight.model.variables, resumed.model.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]


@pytest.mark.slow
def test_checkpoint_from_another_config_is_refused(tmp_path):
    from classifier.train import CheckpointMismatchError, Trainer, split_holdout

    data = _toy_clipset(n=100)
    cfg = _config(tmp_path, iterations=2, eval_every=2, checkpoint_every=2)
    train_set, holdout = split_holdout(cfg, data)
    Trainer(cfg, train_set, holdout).run()
    other = _config(tmp_path, iterations=2, eval_every=2, checkpoint_every=2, dropout=0.3)
    with pytest.raises(CheckpointMismatchError, match="different training configuration"):
        Trainer(other, train_set, holdout).run()


@pytest.mark.slow
def test_retrain_on_user_npz_embeddings_and_labels_csv(tmp_path):
    from classifier.pretrained import load_head
    from classifier.retrain import retrain

    toy = _toy_clipset(n=120, num_classes=3, seed=4)
    names = ["Gate", "Kettle", "Cat purr"]
    root = tmp_path / "emb"
    rows = ["id,labels"]
    for i, (x, m, y) in enumerate(zip(toy.x, toy.mask, toy.y, strict=True)):
        rel = f"set{i % 2}/clip{i}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez(root / f"{rel}.npz", embedding=x[m], timestamps=np.arange(m.sum()) * 0.96)
        labels = ",".join(names[k] for k in np.flatnonzero(y))
        rows.append(f'{rel},"{labels}"')
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("\n".join(rows) + "\n")

    result = retrain(root, labels_csv, tmp_path / "out", hidden_units=16, batch_size=32, iterations=30,
                     eval_every=10, checkpoint_every=10, snapshots=1, learning_rate=1e-2, progress=False)
    head = load_head(result.head_path)
    assert sorted(head.class_names) == sorted(names) and head.num_classes == 3
    assert result.metrics is not None and result.metrics.mAP > 0.8
    assert {"per_class.csv", "summary.json"} <= {p.name for p in result.report_dir.iterdir()}
    assert head.predict_clips(toy.clips()[:5]).shape == (5, 3)


@pytest.mark.slow
def test_constant_lr_run_can_be_extended(tmp_path):
    from classifier.train import Trainer, split_holdout

    data = _toy_clipset(n=100)
    straight_cfg = _config(tmp_path / "a", iterations=6, eval_every=2, checkpoint_every=2)
    train_set, holdout = split_holdout(straight_cfg, data)
    straight = Trainer(straight_cfg, train_set, holdout)
    straight.run()
    Trainer(_config(tmp_path / "b", iterations=4, eval_every=2, checkpoint_every=2), train_set, holdout).run()
    (tmp_path / "b").rename(tmp_path / "moved")  # a moved run folder resumes, with or without a progress bar
    moved_cfg = _config(tmp_path / "moved", iterations=6, eval_every=2, checkpoint_every=2, snapshots=2,
                        progress=True)
    extended = Trainer(moved_cfg, train_set, holdout)
    extended.run()
    assert [r["iteration"] for r in extended.history] == [2, 4, 6]
    for a, b in zip(straight.model.variables, extended.model.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_tiny_transformer_trains_and_its_head_keeps_its_settings(tmp_path):
    from classifier.pretrained import load_head
    from classifier.train import train_clipset

    data = _toy_clipset(n=200)
    config = _config(tmp_path, kind="transformer", num_heads=4, transformer_layers=2, iterations=20,
                     learning_rate=1e-2, dropout=0.1)
    head = load_head(train_clipset(config, data))
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["train_loss"]) < 0.8 * float(rows[0]["train_loss"])
    assert float(rows[-1]["holdout_mAP"]) > 0.8  # chance ~0.47 (each class is on ~47 % of clips); was 0.89
    assert head.member_configs[0] == {
        "kind": "transformer", "num_classes": 4, "hidden_units": 16, "num_layers": 3, "dropout": 0.1,
        "attention": "sigmoid", "num_heads": 4, "transformer_layers": 2}
    assert head.predict_clips([data.clips()[0][:1], data.clips()[1]]).shape == (2, 4)  # 1 frame works


def test_transformer_settings_enter_only_transformer_configs_and_old_checkpoints_still_match(tmp_path):
    import json

    from classifier.train import TrainError, _trajectory_key

    assert "num_heads" not in _config(tmp_path).model_config(4)  # older kinds' head configs stay as they were
    member = _config(tmp_path, kind="transformer", num_heads=2).model_config(4)
    assert (member["num_heads"], member["transformer_layers"]) == (2, 1)
    with pytest.raises(TrainError, match=r"transformer: num_heads must be >= 1 and divide hidden_units"):
        _config(tmp_path, kind="transformer", num_heads=3).check()
    with pytest.raises(TrainError, match="apply to the transformer kind only, not to 'single_attention'"):
        _config(tmp_path, transformer_layers=2).check()
    # A checkpoint written before these settings existed has no such keys in its config: it still resumes.
    config = _config(tmp_path)
    current = json.dumps(dataclasses.asdict(config), sort_keys=True)
    older = json.loads(current)
    del older["num_heads"], older["transformer_layers"]
    assert _trajectory_key(json.dumps(older)) == _trajectory_key(current)
    one, two = (json.dumps(dataclasses.asdict(_config(tmp_path, kind="transformer", transformer_layers=n)))
                for n in (1, 2))
    assert _trajectory_key(one) != _trajectory_key(two)  # a deeper model does not resume a shallower run


def test_context_enters_only_configs_that_use_it_and_only_where_it_applies(tmp_path):
    import json

    from classifier.train import TrainError, _trajectory_key

    assert "context" not in _config(tmp_path).model_config(4)  # older heads' configs stay as they were
    assert _config(tmp_path, context=True).model_config(4)["context"] is True
    with pytest.raises(TrainError, match=r"context applies to the kinds .*, not to 'multi_attention'"):
        _config(tmp_path, kind="multi_attention", context=True).check()
    current = json.dumps(dataclasses.asdict(_config(tmp_path)), sort_keys=True)
    older = json.loads(current)
    del older["context"]  # a checkpoint from before the setting existed still resumes
    assert _trajectory_key(json.dumps(older)) == _trajectory_key(current)
    with_context = json.dumps(dataclasses.asdict(_config(tmp_path, context=True)))
    assert _trajectory_key(with_context) != _trajectory_key(current)


def test_frame_dropout_and_time_mask_keep_a_real_frame_and_drop_at_the_set_rate(tmp_path):
    from classifier.train import _Batches

    data = _toy_clipset(n=300)
    config = _config(tmp_path, batch_size=300, balanced=False, frame_dropout=0.3, time_mask=3)
    batches = _Batches(config, data)
    dropped = kept_real = 0
    for _ in range(5):
        x, mask, _ = batches.next()
        assert (mask.sum(axis=1) >= 1).all()  # every clip keeps a frame
        assert (x[mask == 0] == 128).all()  # masked frames carry no data
        kept_real += mask.sum()
        dropped += 300 * data.mask.sum() / len(data) - mask.sum()
    rate = dropped / (dropped + kept_real)
    assert 0.3 < rate < 0.55  # 30 % dropout plus a mask of 0..3 frames


def test_targets_prior_smoothing_teacher_mixing_and_ontology_ancestors(tmp_path):
    from classifier.clipset import ClipSet
    from classifier.labels import load_class_labels, load_ontology
    from classifier.pretrained import Head
    from classifier.train import _Batches, training_targets

    data = _toy_clipset(n=50)
    config = _config(tmp_path, batch_size=50, balanced=False, label_smoothing=0.2, smoothing_target="prior")
    _, _, y = _Batches(config, data).next()
    assert np.isclose(y.min(), 0.2 * data.y.mean(axis=0).min(), atol=1e-6)
    assert training_targets(config, data) is None  # plain labels

    teacher = Head.from_weights([{"kind": "average", "num_classes": 4, "hidden_units": 8, "num_layers": 1}],
                                [[np.zeros((128, 8)), np.zeros(8), np.ones(8), np.zeros(8), np.zeros(8),
                                  np.ones(8), np.zeros((8, 4)), np.zeros(4)]], data.class_names, "t")
    path = teacher.save(tmp_path / "teacher.npz")  # predicts 0.5 for every class
    targets = training_targets(_config(tmp_path, teacher=str(path), distill_weight=0.25), data)
    np.testing.assert_allclose(targets, 0.25 * 0.5 + 0.75 * data.y, atol=1e-6)

    labels = load_class_labels()
    ancestors = load_ontology().class_ancestors(labels)
    child = next(i for i, a in enumerate(ancestors) if len(a) >= 2)
    y = np.zeros((1, len(labels)), bool)
    y[0, child] = True
    audioset = ClipSet(x=np.zeros((1, 10, 128), np.uint8), mask=np.ones((1, 10), bool), y=y,
                       ids=np.array(["a"]), class_names=labels.names)
    targets = training_targets(_config(tmp_path, ontology_smoothing=0.3), audioset)[0]
    assert targets[child] == 1.0 and np.allclose(targets[ancestors[child]], 0.3)
    assert np.count_nonzero(targets) == 1 + len(ancestors[child])


def test_bad_new_settings_are_refused_by_name(tmp_path):
    from classifier.train import TrainError

    for setting in ({"frame_dropout": 1.0}, {"time_mask": -1}, {"smoothing_target": "zero"},
                    {"distill_weight": 2.0}, {"snapshot_average": "median"}, {"ontology_smoothing": -0.1}):
        with pytest.raises(TrainError, match=next(iter(setting))):
            _config(tmp_path, **setting).check()


@pytest.mark.slow
def test_weight_averaged_snapshots_give_one_member(tmp_path):
    from classifier.pretrained import load_head
    from classifier.train import average_weights, load_snapshot, train_clipset

    config = _config(tmp_path, snapshots=3, snapshot_average="weights", frame_dropout=0.1, input_dropout=0.1,
                     kind="linear_softmax")
    head = load_head(train_clipset(config, _toy_clipset()))
    chosen = head.info["snapshot_iterations"]
    assert len(chosen) == 3 and len(head.member_weights) == 1
    assert head.member_configs[0]["input_dropout"] == 0.1
    expected = average_weights([load_snapshot(tmp_path / "run", it) for it in chosen])
    for got, want in zip(head.member_weights[0], expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert head.info["holdout_mAP"] > 0.9
