"""Post-hoc probes of the shipped head (no training): timeline inputs and formulas, test-time augmentation.

    python research/posthoc_probes.py timeline [--head PATH] [--eval-cache runs/cache_eval.npz]
    python research/posthoc_probes.py contributions [--head PATH] [--eval-cache runs/cache_eval.npz]
    python research/posthoc_probes.py tta [--head PATH] [--train-cache runs/clips_bal_train.npz]
    python research/posthoc_probes.py decision [--member 1] [--iterations 800] [--variants sigmoid ...]
        [--train-cache ...] [--eval-cache ...]

``timeline`` (strong-label dev half, the release's 1-s grid, classifier.strong's metrics; measurement only):
- background subtraction: each patch's embedding minus beta x (the mean of the clip's other patches - the
  mean patch of these clips), rounded back to uint8, scored by the head's frame members; alone and mixed
  with the plain frame log-odds (weight w);
- other calibrations than ``clip * (frame / max_t frame) ** gamma``: relative to the clip's mean frame,
  exp(g * (logit - max_t logit)), and the within-clip rank.
``contributions`` (strong-label dev half, as ``timeline``): the feature-level attention members' clip
logit split exactly into one term per frame (logit = bias + sum_t r[t]: the pooled, batch-normalised hidden
units that pass the clip's ReLU, each frame's share by its attention weight, times the output layer), a
class activation map; frame score sigmoid(T r[t] + bias) (the clip's logit if every frame were like frame
t), alone, against the member's frames scored as one-patch clips, and mixed with the raw frames' log-odds.
``tta`` (held-out split of balanced_train): clip scores averaged over leave-one-frame-out masks, per member,
then combined by the head's rule; and the score with each single frame left out. Eval is never used.
``decision`` (a probe that trains, cheaply): the output layers (frame classifier and attention) of one of
the head's single-attention members retrained on its frozen trunk (its last hidden layer, computed once), on
the training split of balanced_train, with balanced batches of 500 and dropout 0.5 on their input.
Variants: ``sigmoid`` (the member's own design), ``softmax`` (softmax attention over time), ``contrast``
(the input is each frame's hidden vector next to its difference from the mean of the clip's other frames),
``splice`` (half of each batch's clips spliced with another clip of the batch at a random frame, labels the
union: a weakly labelled clip whose parts' sources are known) and ``splice_negatives`` (the same, plus a
frame-level cross-entropy toward 0 wherever a frame's own clip lacks a class of the spliced clip).
Prints held-out clip mAP, and on the strong-label dev half the localization AP of the frame probabilities
times the attention weights ** a (softmax weights scaled to a largest weight of 1) and the frame mAP of
those scores calibrated with the shipped head's clip probabilities (gamma 0.2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from classifier import load_head, load_pretrained
from classifier.clipset import pad_clips
from classifier.head_file import combine_probabilities, from_log_odds, log_odds
from classifier.inference import Member
from classifier.labels import load_class_labels
from classifier.metrics import compute_metrics
from classifier.readers import cache_clipset, load_clipset
from classifier.strong import (
    RELEASE_FRAME_HOP,
    frame_map,
    frame_targets,
    localization_ap,
    match_release,
    read_strong_labels,
)
from classifier.timeline import TimelineParams, calibrate_frames

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT.parent / "shared" / "data" / "audioset_v1_embeddings"
STRONG = ROOT.parent / "shared" / "data" / "audioset_strong" / "eval_strong_dev.tsv"


def _clips(path: Path, cache: Path | None):
    return cache_clipset(path, cache) if cache else load_clipset(path)


def _strong_dev(eval_cache: Path | None):
    """The eval clips with strong labels (classifier.strong.match_release) and their frame targets, bool
    [T, K] per clip on the release's 1-s grid."""
    strong = read_strong_labels(STRONG)
    matched = match_release(_clips(RELEASE / "eval", eval_cache), strong, load_class_labels().mids)
    targets = [frame_targets(strong[s], len(c), matched.column_of, hop=RELEASE_FRAME_HOP)
               for s, c in zip(matched.segments, matched.clips, strict=True)]
    return matched, targets


def background_subtracted(clips: list[np.ndarray], beta: float) -> list[np.ndarray]:
    """uint8 [T, 128] clips with beta x (mean of the other patches - mean patch of all clips) subtracted from
    each patch; one-patch clips are unchanged."""
    mean_patch = np.concatenate(clips).astype(np.float64).mean(axis=0)
    out = []
    for clip in clips:
        x = clip.astype(np.float64)
        n = len(x)
        others = (x.sum(axis=0) - x) / (n - 1) if n > 1 else x
        out.append(np.clip(np.rint(x - beta * (others - mean_patch)), 0, 255).astype(np.uint8))
    return out


def probe_timeline(args: argparse.Namespace) -> None:
    matched, targets = _strong_dev(args.eval_cache)
    clips, columns = matched.clips, matched.columns
    head = load_head(args.head) if args.head else load_pretrained()
    clip_probs = head.predict_clips(clips)[:, columns]
    plain = [log_odds(f[:, columns]) for f in head.predict_frames_raw(clips)]

    def report(name: str, logits: list[np.ndarray]) -> None:
        frames = [from_log_odds(z) for z in logits]
        loc = localization_ap(targets, frames)
        calibrated = [calibrate_frames(p, f, head.timeline) for p, f in zip(clip_probs, frames, strict=True)]
        print(f"| {name} | {loc.ap:.4f} ({loc.ap - loc.chance:+.4f}) | "
              f"{frame_map(targets, calibrated):.4f} |", flush=True)

    print(f"{len(clips)} clips, {len(matched.mids)} classes; calibrated with gamma {head.timeline.gamma}\n")
    print("| frame scores | localization AP (vs chance) | frame mAP, calibrated |\n|---|---|---|")
    report("plain frame probabilities", plain)
    for beta in (0.25, 0.5, 1.0):
        shifted_clips = background_subtracted(clips, beta)
        shifted = [log_odds(f[:, columns]) for f in head.predict_frames_raw(shifted_clips)]
        report(f"background subtracted, beta {beta}", shifted)
        for w in (0.3, 0.5, 0.7):
            report(f"  mixed with plain, weight {w}", [(1 - w) * a + w * b for a, b in zip(plain, shifted,
                                                                                       strict=True)])

    frames = [from_log_odds(z) for z in plain]
    print("\n| calibration | frame mAP |\n|---|---|")
    shipped = [calibrate_frames(p, f, TimelineParams(0.25)) for p, f in zip(clip_probs, frames, strict=True)]
    print(f"| clip x (frame / max frame) ^ 0.25 (shipped) | {frame_map(targets, shipped):.4f} |")
    for gamma in (0.1, 0.2, 0.3):
        scored = [p * (f / np.maximum(f.mean(axis=0), 1e-12)) ** gamma for p, f in zip(clip_probs, frames,
                                                                                      strict=True)]
        print(f"| clip x (frame / mean frame) ^ {gamma} | {frame_map(targets, scored):.4f} |")
    for g in (0.05, 0.1, 0.2):
        scored = [p * np.exp(g * (z - z.max(axis=0))) for p, z in zip(clip_probs, plain, strict=True)]
        print(f"| clip x exp({g} (logit - max logit)) | {frame_map(targets, scored):.4f} |")
    ranked = [p * ((np.argsort(np.argsort(f, axis=0), axis=0) + 1) / len(f)) ** 0.25
              for p, f in zip(clip_probs, frames, strict=True)]
    print(f"| clip x (rank within clip / T) ^ 0.25 | {frame_map(targets, ranked):.4f} |")


def frame_contributions(member: Member, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A feature-level attention member's clip logits split into frames: (r float32 [B, T, C], one-patch
    logits float32 [B, T, C]) with logit[b, c] = bias[c] + sum_t r[b, t, c] exactly (for logits that float32
    probabilities do not saturate). Reads the member's layers directly (a probe, not an API)."""
    hidden = member.last_hidden(x, mask)
    values = member._apply("feat_cla", hidden)
    weights = member._attention_weights(member._apply("feat_att", hidden), mask)
    share = weights / np.maximum(weights.sum(axis=1, keepdims=True), np.float32(1e-7))
    scale, shift = member._pool_norm
    normalised = values * scale + shift  # batch norm after pooling is affine, so it commutes with the mean
    per_frame = share * normalised
    active = (per_frame.sum(axis=1) > 0).astype(np.float32)  # units the clip's ReLU passes
    kernel, bias = member._dense["clip_probs"]
    one_patch = np.maximum(normalised, 0.0) @ kernel + bias
    return (per_frame * active[:, None, :]) @ kernel, one_patch


def probe_contributions(args: argparse.Namespace) -> None:
    matched, targets = _strong_dev(args.eval_cache)
    clips, columns = matched.clips, matched.columns
    lengths = [len(c) for c in clips]
    head = load_head(args.head) if args.head else load_pretrained()
    clip_probs = head.predict_clips(clips)[:, columns]
    plain = [log_odds(f[:, columns]) for f in head.predict_frames_raw(clips)]
    x, mask = pad_clips(clips)
    mask = mask.astype(np.float32)
    frames_per_clip = mask.sum(axis=1)[:, None, None]

    def report(name: str, logits: np.ndarray | list[np.ndarray]) -> None:
        frames = [from_log_odds(z[:n]) for z, n in zip(logits, lengths, strict=True)]
        loc = localization_ap(targets, frames)
        line = f"| {name} | {loc.ap:.4f} ({loc.ap - loc.chance:+.4f}) |"
        for gamma in (0.2, 0.3):
            calibrated = [calibrate_frames(p, f, TimelineParams(gamma))
                          for p, f in zip(clip_probs, frames, strict=True)]
            line += f" {frame_map(targets, calibrated):.4f} |"
        print(line, flush=True)

    print(f"{len(clips)} clips, {len(matched.mids)} classes\n")
    print("| frame scores | localization AP (vs chance) | frame mAP, gamma 0.2 | gamma 0.3 |\n"
          "|---|---|---|---|")
    report(f"the head's raw frames (a = {head.timeline.attention_exponent})", plain)
    maps = []
    for i, config in enumerate(head.member_configs):
        if config["kind"] != "feature_attention":
            continue
        member = Member(config, head.member_weights[i])
        parts = [frame_contributions(member, x[k:k + 1000], mask[k:k + 1000]) for k in range(0, len(x), 1000)]
        bias = member._dense["clip_probs"][1][columns]
        contributions = np.concatenate([r for r, _ in parts])[..., columns]
        maps.append(frames_per_clip * contributions + bias)
        report(f"member {i}: sigmoid(T r[t] + bias)", maps[-1])
        one_patch = np.concatenate([o for _, o in parts])[..., columns]
        report(f"member {i}: each frame as a one-patch clip", one_patch)
    if maps:
        mean_map = np.mean(maps, axis=0)
        report("mean of the feature-level members' maps", mean_map)
        for w in (0.2, 0.5):
            report(f"raw frames' log-odds mixed with it, weight {w}",
                   [(1 - w) * z + w * c[:len(z)] for z, c in zip(plain, mean_map, strict=True)])


def probe_tta(args: argparse.Namespace) -> None:
    from classifier.train import TrainConfig, split_holdout

    _, holdout = split_holdout(TrainConfig(), _clips(RELEASE / "bal_train", args.train_cache))
    head = load_head(args.head) if args.head else load_pretrained()
    members = [head.subset([i], f"m{i}") for i in range(len(head.member_configs))]

    def member_probs(mask: np.ndarray) -> list[np.ndarray]:
        return [m.predict_arrays(holdout.x, mask) for m in members]

    def score(per_member: list[np.ndarray]) -> float:
        return compute_metrics(holdout.y, combine_probabilities(per_member, head.combine)).mAP

    full = member_probs(holdout.mask)
    left_out = []
    for t in range(holdout.mask.shape[1]):
        mask = holdout.mask.copy()
        mask[:, t] = False
        emptied = ~mask.any(axis=1)
        mask[emptied] = holdout.mask[emptied]  # a clip whose only frame is t keeps it
        left_out.append(member_probs(mask))
    print(f"held-out: {len(holdout.y)} clips; the head as it is: mAP {score(full):.5f}\n")
    print("| leave-one-frame-out masks averaged | weight | held-out mAP |\n|---|---|---|")
    for k in (1, 3, len(left_out)):
        for w in (0.5, 1.0):
            mixed = [(1 - w) * full[j] + w * np.mean([v[j] for v in left_out[:k]], axis=0)
                     for j in range(len(members))]
            print(f"| frames 0..{k - 1} | {w} | {score(mixed):.5f} |", flush=True)
    print("\n| frame left out (alone, weight 1) | held-out mAP |\n|---|---|")
    for t, probs in enumerate(left_out):
        print(f"| {t} | {score(probs):.5f} |")


def splice_batch(h: np.ndarray, mask: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                 rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splices a share ``rate`` of the clips of a batch with the next clip of the batch: frames before a
    random cut k (1..T-1) from the clip, frames from k on from its partner (positions kept). Returns the new
    (h [B, T, H], mask [B, T], clip targets [B, C] = the union of the labels of the parts that keep a real
    frame, frame negatives float32 [B, T, C]: 1 where a frame's own clip lacks a class that the spliced clip
    is labelled with, i.e. frames known not to contain it)."""
    batch, frames = mask.shape
    partner = np.roll(np.arange(batch), -1)
    cut = rng.integers(1, frames, size=batch)
    spliced = rng.random(batch) < rate
    from_partner = spliced[:, None] & (np.arange(frames)[None] >= cut[:, None])  # [B, T]
    new_h = np.where(from_partner[..., None], h[partner], h)
    new_mask = np.where(from_partner, mask[partner], mask)
    own_real = ((new_mask > 0) & ~from_partner).any(axis=1)
    partner_real = ((new_mask > 0) & from_partner).any(axis=1)
    yb = y.astype(bool)
    targets = (yb & own_real[:, None]) | (yb[partner] & partner_real[:, None])
    source = np.where(from_partner[..., None], yb[partner][:, None, :], yb[:, None, :])  # [B, T, C]
    negatives = (targets[:, None, :] & ~source & (new_mask[..., None] > 0)).astype(np.float32)
    return new_h, new_mask.astype(np.float32), targets.astype(np.float32), negatives


def probe_decision(args: argparse.Namespace) -> None:
    import tensorflow as tf

    from classifier.models import AttentionPooling
    from classifier.sampling import BalancedSampler
    from classifier.train import TrainConfig, split_holdout

    head = load_head(args.head) if args.head else load_pretrained()
    member = Member(head.member_configs[args.member], head.member_weights[args.member])
    if member.kind != "single_attention":
        raise SystemExit(f"member {args.member} is {member.kind}, not single_attention")
    train, holdout = split_holdout(TrainConfig(), _clips(RELEASE / "bal_train", args.train_cache))
    matched, targets = _strong_dev(args.eval_cache)
    lengths = [len(c) for c in matched.clips]
    strong_x, strong_mask = pad_clips(matched.clips)
    strong_mask = strong_mask.astype(np.float32)
    shipped_clip = head.predict_clips(matched.clips)[:, matched.columns]

    def hidden(x: np.ndarray, mask: np.ndarray) -> np.ndarray:  # float16 [N, T, H]: memory
        return np.concatenate([member.last_hidden(x[i:i + 2000], mask[i:i + 2000]).astype(np.float16)
                               for i in range(0, len(x), 2000)])

    sets = {name: (hidden(x, m), np.asarray(m, np.float32)) for name, x, m in
            (("train", train.x, train.mask), ("holdout", holdout.x, holdout.mask),
             ("strong", strong_x, strong_mask))}
    exponent = head.timeline.attention_exponent
    own = [f[:n][:, matched.columns]
           for f, n in zip(member.frame_probs(strong_x, strong_mask, exponent), lengths, strict=True)]
    calibrated = [calibrate_frames(p, f, TimelineParams(0.2)) for p, f in zip(shipped_clip, own, strict=True)]
    print(f"member {args.member} as shipped (a = {exponent}): localization "
          f"{localization_ap(targets, own).ap:.4f}, frame mAP {frame_map(targets, calibrated):.4f}\n")
    print("| variant | held-out mAP | a = 0: localization / frame mAP | a = 0.5 | a = 1 |\n"
          "|---|---|---|---|---|")

    def inputs(h, mask, contrast: bool):
        h = tf.cast(h, tf.float32)
        if not contrast:
            return h
        m = tf.expand_dims(mask, -1)
        total, count = tf.reduce_sum(h * m, 1, keepdims=True), tf.reduce_sum(m, 1, keepdims=True)
        others = (total - h * m) / tf.maximum(count - 1.0, 1.0)
        return tf.concat([h, (h - others) * m], -1)

    for variant in args.variants:
        contrast, softmax = variant == "contrast", variant == "softmax"
        splice_rate = 0.5 if variant.startswith("splice") else 0.0
        negative_weight = 1.0 if variant == "splice_negatives" else 0.0
        width = sets["train"][0].shape[-1] * (2 if contrast else 1)
        init = tf.keras.initializers.GlorotUniform(seed=0)
        weights = [tf.Variable(init((width, 527))), tf.Variable(tf.zeros(527)),
                   tf.Variable(init((width, 527))), tf.Variable(tf.zeros(527))]

        pool = AttentionPooling("softmax" if softmax else "sigmoid")

        def forward(h, mask, contrast=contrast, weights=weights, pool=pool, training=False):
            z = inputs(h, mask, contrast)
            if training:
                z = tf.nn.dropout(z, 0.5, seed=1)
            frame = tf.sigmoid(tf.einsum("btd,dc->btc", z, weights[0]) + weights[1])
            logits = tf.einsum("btd,dc->btc", z, weights[2]) + weights[3]
            return frame, pool.attention_weights(logits, mask), pool(frame, logits, mask)

        optimizer = tf.keras.optimizers.Adam(1e-3)

        @tf.function
        def step(h, mask, y, negatives, forward=forward, weights=weights, optimizer=optimizer,
                 negative_weight=negative_weight):
            with tf.GradientTape() as tape:
                frame, _, clip = forward(h, mask, training=True)
                clip = tf.clip_by_value(clip, 1e-7, 1 - 1e-7)
                loss = tf.reduce_mean(tf.keras.losses.binary_crossentropy(y, clip))
                if negative_weight:  # frames known not to contain a class: BCE toward 0
                    frame_loss = -tf.math.log(tf.clip_by_value(1 - frame, 1e-7, 1.0)) * negatives
                    loss += negative_weight * tf.reduce_sum(frame_loss) / tf.maximum(
                        tf.reduce_sum(negatives), 1.0)
            optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))

        sampler = BalancedSampler(train.y, 500, seed=0)
        rng = np.random.default_rng(0)
        h_train, m_train = sets["train"]
        no_negatives = np.zeros((sampler.batch_size, m_train.shape[1], train.y.shape[1]), np.float32)
        for _ in range(args.iterations):
            rows = sampler.next_batch()
            h, m, y = h_train[rows], m_train[rows], train.y[rows].astype(np.float32)
            negatives = no_negatives
            if splice_rate:
                h, m, y, negatives = splice_batch(h, m, y, rng, splice_rate)
            step(h, m, y, negatives)

        def predict(name: str, forward=forward) -> list[np.ndarray]:
            h, mask = sets[name]
            parts = [forward(h[i:i + 2000], mask[i:i + 2000]) for i in range(0, len(h), 2000)]
            return [np.concatenate([p[k].numpy() for p in parts]) for k in range(3)]

        line = f"| {variant} | {compute_metrics(holdout.y, predict('holdout')[2]).mAP:.4f} |"
        frame, w, _ = predict("strong")
        w = w / np.maximum(w.max(axis=1, keepdims=True), 1e-12)  # softmax: largest weight 1
        for a in (0.0, 0.5, 1.0):
            scores = [(frame[i] * w[i] ** a)[:n][:, matched.columns] for i, n in enumerate(lengths)]
            calibrated = [calibrate_frames(p, f, TimelineParams(0.2))
                          for p, f in zip(shipped_clip, scores, strict=True)]
            line += f" {localization_ap(targets, scores).ap:.4f} / {frame_map(targets, calibrated):.4f} |"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", choices=("timeline", "contributions", "tta", "decision"))
    parser.add_argument("--head", type=Path, default=None, help="head file (default: the shipped head)")
    parser.add_argument("--eval-cache", type=Path, default=None, help="npz cache of the eval clips")
    parser.add_argument("--train-cache", type=Path, default=None, help="npz cache of balanced_train")
    parser.add_argument("--member", type=int, default=1, help="decision: index of the head's member")
    parser.add_argument("--iterations", type=int, default=800, help="decision: balanced batches of 500")
    parser.add_argument("--variants", nargs="+", default=["sigmoid", "softmax", "contrast"],
                        choices=("sigmoid", "softmax", "contrast", "splice", "splice_negatives"))
    args = parser.parse_args()
    probes = {"timeline": probe_timeline, "contributions": probe_contributions, "tta": probe_tta,
              "decision": probe_decision}
    probes[args.probe](args)


if __name__ == "__main__":
    main()
