"""The linear probe: logistic regression (scikit-learn) on the mean of a clip's embedding frames, as a head
member of kind "linear" (:mod:`classifier.inference`), so that every engine runs it.

Features are the clip's mean scaled frame ((x - 128) / 128 over its real frames), standardised (zero mean,
unit variance per dimension over the training clips, as scikit-learn's StandardScaler). Single-label
("multiclass") tasks fit one multinomial logistic regression (softmax); multi-label tasks one binary
logistic regression per class (one-vs-rest, sigmoid). The standardisation is folded into the member's
weights: logits = mean frame @ kernel + bias, kernel float32 [128, C], bias float32 [C].
"""

from __future__ import annotations

import numpy as np

from classifier.head_file import TASK_OUTPUTS
from classifier.inference import EMBEDDING_SIZE

PROBE_C = 0.01
"""Inverse regularisation strength of the logistic regressions. On standardised VGGish means it beat
scikit-learn's default of 1.0 at 5, 20 and 100 clips per class (benchmarks/own_sounds.py)."""
MAX_ITERATIONS = 1000  # lbfgs iterations
ABSENT_LOGIT = 20.0  # |logit| of a class that the training clips always (+) or never (-) have


def mean_frames(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean scaled frame (x - 128) / 128 of each clip, float64 [N, 128], from x uint8 [N, T, 128] and
    mask bool [N, T] (clips without a real frame give zeros)."""
    m = np.asarray(mask, np.float64)[..., None]
    scaled = np.asarray(x, np.float64) / 128.0 - 1.0
    return (scaled * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def linear_config(num_classes: int, task: str) -> dict:
    """The member config of a linear probe for ``task`` (its ``output`` key only when not sigmoid)."""
    config = {"kind": "linear", "num_classes": num_classes}
    if TASK_OUTPUTS[task] != "sigmoid":
        config["output"] = TASK_OUTPUTS[task]
    return config


def fit_linear(x: np.ndarray, mask: np.ndarray, y: np.ndarray, task: str, c: float = PROBE_C
               ) -> tuple[dict, list[np.ndarray]]:
    """Fit the probe on clips x uint8 [N, T, 128], mask bool [N, T], labels y bool [N, C]; returns its
    member config and weights [kernel float32 [128, C], bias float32 [C]]."""
    features = mean_frames(x, mask)
    centre = features.mean(axis=0)
    spread = features.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)  # as StandardScaler: constant dimensions are left unscaled
    standard = (features - centre) / spread
    fit = _fit_softmax if task == "multiclass" else _fit_one_vs_rest
    kernel, bias = fit(standard, np.asarray(y, bool), c)
    folded_kernel = kernel / spread[:, None]
    folded_bias = bias - (centre / spread) @ kernel
    return linear_config(y.shape[1], task), [folded_kernel.astype(np.float32), folded_bias.astype(np.float32)]


def _logistic(c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=MAX_ITERATIONS)


def _fit_softmax(features: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: (kernel [128, C], bias [C]) of standardised features [N, 128] and
    one-hot y [N, C]; classes without a clip get the bias -ABSENT_LOGIT."""
    num_classes = y.shape[1]
    kernel = np.zeros((EMBEDDING_SIZE, num_classes))
    bias = np.full(num_classes, -ABSENT_LOGIT)
    labels = y.argmax(axis=1)
    present = np.unique(labels)
    if len(present) == 1:
        bias[present] = 0.0
        return kernel, bias
    model = _logistic(c).fit(features, labels)
    if len(present) == 2:  # scikit-learn keeps one logit for two classes: softmax([0, z]) = sigmoid(z)
        bias[present] = 0.0, float(model.intercept_[0])
        kernel[:, present[1]] = model.coef_[0]
    else:
        kernel[:, present] = model.coef_.T
        bias[present] = model.intercept_
    return kernel, bias


def _fit_one_vs_rest(features: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """One binary logistic regression per class: (kernel [128, C], bias [C]); a class that every clip or
    no clip has gets the bias +/- ABSENT_LOGIT."""
    num_classes = y.shape[1]
    kernel = np.zeros((EMBEDDING_SIZE, num_classes))
    bias = np.zeros(num_classes)
    for k in range(num_classes):
        positives = int(y[:, k].sum())
        if positives in (0, len(y)):
            bias[k] = ABSENT_LOGIT if positives else -ABSENT_LOGIT
            continue
        model = _logistic(c).fit(features, y[:, k])
        kernel[:, k], bias[k] = model.coef_[0], model.intercept_[0]
    return kernel, bias
