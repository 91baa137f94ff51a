"""Per-layer linear probes: at which layer does the model know that a request is harmful?

`LinearProbe` is one L2-regularised logistic regression on standardised features, with two
backends that minimise the same objective (so they agree up to solver tolerance):
scikit-learn's `LogisticRegression` (the reference) and a batched torch L-BFGS that fits many
layers at once. `fit_probes_per_layer` sweeps every layer on a stratified held-out split and
returns a `ProbeSweep` (accuracy, AUROC and a bootstrap interval per layer); `ProbeSweep.transfer`
and `transfer_probes` test probes trained on one condition on another.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from interp._checks import check_int, check_real
from interp._types import Float
from interp.activations import Activations
from interp.errors import InterpError, NotFittedError
from interp.probes._solvers import fit_logistic_batched

__all__ = [
    "LayerMismatchError",
    "LengthMismatchError",
    "LinearProbe",
    "NonBinaryLabelsError",
    "NonFiniteActivationsError",
    "ProbeInputError",
    "ProbeSweep",
    "SingleClassError",
    "fit_probes_per_layer",
    "transfer_probes",
]

Backend = Literal["sklearn", "torch"]


class ProbeInputError(InterpError, ValueError):
    """Activations or labels that no probe can be fitted on."""


class SingleClassError(ProbeInputError):
    """The training labels hold one class only."""


class LengthMismatchError(ProbeInputError):
    """Labels and activations have different numbers of rows."""


class NonFiniteActivationsError(ProbeInputError):
    """Activations contain NaN or infinite values."""


class NonBinaryLabelsError(ProbeInputError):
    """Hard-label probes got a label other than 0 or 1 (a soft 0.5, an unknown -1, a NaN)."""


class LayerMismatchError(LengthMismatchError):
    """The `layers` given do not name the rows of the activation stack."""


def as_tensor(x: Any) -> torch.Tensor:
    """A float tensor view of an array-like (float64 arrays stay float64)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if t.is_floating_point() else t.float()


def _all_finite(x: torch.Tensor) -> bool:
    """Whether x holds no NaN/inf; a column sum (one fast matvec pass) screens first."""
    if x.numel() == 0:
        return True
    flat = x.reshape(-1, x.shape[-1])
    screen = torch.ones(1, flat.shape[0], dtype=flat.dtype) @ flat
    # NaN and inf propagate through the sum; a rare overflow of finite values falls back.
    return bool(torch.isfinite(screen).all()) or bool(torch.isfinite(flat).all())


def hard_labels(y: Any) -> torch.Tensor:
    """0/1 labels as an int64 tensor; anything else is refused, never rounded or truncated.

    Floats equal to 0.0 or 1.0 and booleans are hard labels. A soft label (0.5), an unknown
    (-1) or a NaN raises: a hard-label probe would otherwise truncate 0.5 to 0 and learn from
    a label nobody gave.

    Raises:
        ProbeInputError: The labels are not numbers.
        NonBinaryLabelsError: A label is neither 0 nor 1; the first one and its row are named.
    """
    raw = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if raw.dtype.kind not in "biuf":
        raise ProbeInputError(
            f"labels must be numbers 0 or 1 (1 = harmful), got an array of dtype {raw.dtype}; "
            "map them to 0/1 first"
        )
    bad = np.flatnonzero((raw != 0) & (raw != 1)) if raw.ndim == 1 else np.empty(0, np.int64)
    if raw.ndim == 1 and len(bad):
        row = int(bad[0])
        raise NonBinaryLabelsError(
            f"labels must be 0 or 1 (1 = harmful); got {raw[row].item()!r} at row {row} "
            f"({len(bad)} such labels). This probe takes hard labels only: drop unknown (-1) "
            "labels and threshold soft ones (e.g. y >= 0.5) first"
        )
    return torch.as_tensor(raw.astype(np.int64))


def check_inputs(x: torch.Tensor, y: Any | None, *, need_two_classes: bool = True) -> torch.Tensor:
    """Validate activations (any leading dims, rows on dim -2) and 0/1 labels; return labels.

    Raises:
        LengthMismatchError: `len(y)` differs from the number of rows.
        NonBinaryLabelsError: A label is neither 0 nor 1 (see `hard_labels`).
        NonFiniteActivationsError: `x` holds NaN or inf.
        SingleClassError: `need_two_classes` and `y` holds one class only.
    """
    if not _all_finite(x):
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteActivationsError(
            f"activations contain {bad} NaN or infinite values; check the caching dtype "
            "(float16 overflows) or drop the affected prompts before probing"
        )
    if y is None:
        return torch.empty(0)
    labels = hard_labels(y)
    if labels.ndim != 1 or len(labels) != x.shape[-2]:
        raise LengthMismatchError(
            f"got {len(labels)} labels for {x.shape[-2]} activation rows; pass one 0/1 label "
            "per prompt, in the same order as the activations"
        )
    if need_two_classes and len(torch.unique(labels)) < 2:
        raise SingleClassError(
            f"all {len(labels)} labels are {int(labels[0]) if len(labels) else '?'}: a probe needs "
            "both classes; add prompts of the other kind"
        )
    return labels


class LinearProbe:
    """Logistic-regression probe on standardised activations (the estimator contract).

    Args:
        backend: `"sklearn"` (reference) or `"torch"` (L-BFGS, same objective).
        C: Inverse L2 strength, as in scikit-learn (the loss is summed over samples).
        max_iter: Solver iterations at most.
        tol: Stop when the largest gradient entry of the mean loss is below this.
        seed: Kept for the contract; both solvers are deterministic.
        device: Where the torch backend runs (default: where the activations are).

    Raises:
        ParameterError: `C` or `tol` not > 0, or `max_iter` below 1 (at construction).

    Attributes:
        coef_: Weights in the *raw* activation space [d_model] (standardisation folded in).
        intercept_: Bias in the raw space.
        n_features_in_: d_model seen in fit.
        n_iter_: Solver iterations used.
    """

    def __init__(
        self,
        backend: Backend = "torch",
        C: float = 1.0,  # noqa: N803 - scikit-learn's name
        max_iter: int = 200,
        tol: float = 1e-4,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        check_real(C, "LinearProbe C", low=0, low_open=True)
        check_int(max_iter, "LinearProbe max_iter")
        check_real(tol, "LinearProbe tol", low=0, low_open=True)
        self.backend = backend
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.device = device

    def fit(self, x: Any, y: Any) -> LinearProbe:
        """Fit on activations [n, d_model] and 0/1 labels [n]; returns self."""
        if self.backend not in ("sklearn", "torch"):
            raise ValueError(f"unknown backend {self.backend!r}; use 'sklearn' or 'torch'")
        xt = as_tensor(x)
        labels = check_inputs(xt, y)
        coef, intercept, n_iter = fit_layers(
            xt[None],
            labels,
            backend=self.backend,
            C=self.C,
            max_iter=self.max_iter,
            tol=self.tol,
            device=self.device,
        )
        self.coef_ = coef[0]
        self.intercept_ = float(intercept[0])
        self.n_features_in_ = int(xt.shape[-1])
        self.n_iter_ = int(n_iter[0])
        return self

    def _check_fitted(self, x: torch.Tensor) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("this LinearProbe is not fitted yet; call fit(x, y) first")
        if x.shape[-1] != self.n_features_in_:
            raise LengthMismatchError(
                f"the probe was fitted on d_model {self.n_features_in_}, got {x.shape[-1]} features"
            )

    def decision_function(self, x: Any) -> torch.Tensor:
        """Logits [n] (positive = harmful)."""
        xt = as_tensor(x)
        self._check_fitted(xt)
        check_inputs(xt, None)
        return xt.to(self.coef_.dtype) @ self.coef_ + self.intercept_

    def predict_proba(self, x: Any) -> torch.Tensor:
        """Class probabilities [n, 2] (column 1 = harmful)."""
        p = torch.sigmoid(self.decision_function(x))
        return torch.stack([1 - p, p], dim=1)

    def predict(self, x: Any) -> torch.Tensor:
        """Predicted 0/1 labels [n]."""
        return (self.decision_function(x) > 0).long()

    def score(self, x: Any, y: Any) -> float:
        """Accuracy on (x, y)."""
        labels = check_inputs(as_tensor(x), y, need_two_classes=False)
        return float((self.predict(x) == labels).double().mean())


def fit_layers(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    backend: Backend,
    C: float,  # noqa: N803
    max_iter: int,
    tol: float,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Fit one probe per layer of x [n_layers, n, d]; returns raw-space (coef, intercept, iters).

    The torch backend runs on `device` (default: where x is). On a CPU it fits as many layers
    at a time as fit in about 16 MB, so that a chunk's rows stay in cache while L-BFGS
    iterates; elsewhere all at once.
    """
    if backend == "torch":
        dev = torch.device(device) if device is not None else x.device
        # Chunks of about 16 MB: a chunk's rows stay in cache while L-BFGS iterates.
        per_layer = x.shape[1] * x.shape[2] * x.element_size()
        chunk = (
            max(1, min(x.shape[0], (16 << 20) // per_layer)) if dev.type == "cpu" else x.shape[0]
        )
        coefs, biases, iters = [], [], []
        for start in range(0, x.shape[0], chunk):
            c, b, n_it = fit_logistic_batched(
                x[start : start + chunk].to(dev), y.to(dev), C=C, max_iter=max_iter, tol=tol
            )
            coefs.append(c)
            biases.append(b)
            iters.extend(n_it)
        return torch.cat(coefs), torch.cat(biases), iters
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    coef_list, bias_list, iter_list = [], [], []
    for layer in x:
        xn = layer.double().numpy()
        scaler = StandardScaler().fit(xn)
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        model = LogisticRegression(C=C, max_iter=max_iter, tol=tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit((xn - scaler.mean_) / scale, y.numpy())
        w = model.coef_[0] / scale
        coef_list.append(torch.from_numpy(w))
        bias_list.append(float(model.intercept_[0] - scaler.mean_ @ w))
        iter_list.append(int(model.n_iter_[0]))
    return torch.stack(coef_list), torch.tensor(bias_list, dtype=torch.float64), iter_list


def layer_scores(
    x: Float[torch.Tensor, "layer prompts d_model"],
    coef: Float[torch.Tensor, "layer d_model"],
    intercept: Float[torch.Tensor, " layer"],
) -> Float[torch.Tensor, "layer prompts"]:
    """Probe logits [n_layers, n] of activations x [n_layers, n, d] (float64 weights)."""
    return (
        torch.stack([torch.mv(x[i].double(), coef[i]) for i in range(x.shape[0])])
        + intercept[:, None]
    )


@dataclass(frozen=True)
class ProbeSweep:
    """Held-out probe quality per layer.

    Attributes:
        layers: The probed layers.
        accuracy: Held-out accuracy per layer.
        auroc: Held-out AUROC per layer (NaN where the test set holds one class).
        accuracy_low: Lower end of the bootstrap 95% interval of the accuracy.
        accuracy_high: Upper end of that interval.
        best_layer: The layer with the highest accuracy (ties: lowest held-out log-loss).
        best_accuracy: Accuracy at `best_layer`.
        n_train: Training rows.
        n_test: Held-out rows.
        backend: Which solver fitted the probes.
        coef: Probe weights in the raw space [n_layers, d_model] (for `transfer`).
        intercept: Probe biases [n_layers].
    """

    layers: tuple[int, ...]
    accuracy: tuple[float, ...]
    auroc: tuple[float, ...]
    accuracy_low: tuple[float, ...]
    accuracy_high: tuple[float, ...]
    best_layer: int
    best_accuracy: float
    n_train: int
    n_test: int
    backend: str
    coef: Float[torch.Tensor, "layer d_model"] = field(repr=False, compare=False)
    intercept: Float[torch.Tensor, " layer"] = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready summary (no weights)."""
        return {
            "layers": list(self.layers),
            "accuracy_by_layer": [round(a, 4) for a in self.accuracy],
            "auroc_by_layer": [None if np.isnan(a) else round(a, 4) for a in self.auroc],
            "accuracy_low": [round(a, 4) for a in self.accuracy_low],
            "accuracy_high": [round(a, 4) for a in self.accuracy_high],
            "best_layer": self.best_layer,
            "best_accuracy": round(self.best_accuracy, 4),
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    def transfer(
        self, activations: Any, labels: Any, *, n_boot: int = 200, seed: int = 0
    ) -> ProbeSweep:
        """Evaluate these probes, unchanged, on other activations [n_layers, n, d] (all rows test).

        The best layer stays the one chosen on the original held-out split.
        """
        x = _stack(activations, None, "last")
        if x.shape[0] != len(self.layers):
            raise LengthMismatchError(
                f"the sweep has {len(self.layers)} layers but the activations have {x.shape[0]}"
            )
        y = check_inputs(x, labels, need_two_classes=False)
        scores = layer_scores(x, self.coef, self.intercept)
        out = _evaluate(scores, y, self.layers, n_boot=n_boot, seed=seed)
        best = self.layers.index(self.best_layer)
        return replace(
            out,
            best_layer=self.best_layer,
            best_accuracy=out.accuracy[best],
            n_train=self.n_train,
            backend=self.backend,
            coef=self.coef,
            intercept=self.intercept,
        )


def _stack(activations: Any, stream: str | None, position: str) -> torch.Tensor:
    if isinstance(activations, Activations):
        return activations.stack(stream or "resid_post", position)
    x = as_tensor(activations)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ProbeInputError(
            f"expected activations [n_layers, n, d_model], got shape {tuple(x.shape)}"
        )
    return x


def _layer_rows(
    activations: Any, x: torch.Tensor, layers: Sequence[int] | None, stream: str
) -> tuple[torch.Tensor, list[int]]:
    """The stack rows and their layer numbers: all of them, or the `layers` asked for.

    With `Activations`, `layers` picks collected layers (in the order given); with a plain
    stack it names the stack's rows, so it needs one distinct layer number >= 0 per row.

    Raises:
        LayerMismatchError: A layer is not collected, `layers` has another length than the
            stack's layer axis, or names a layer twice or a negative one.
    """
    collected = (
        activations.layers(stream) if isinstance(activations, Activations) else list(range(len(x)))
    )
    if layers is None:
        return x, collected
    if isinstance(layers, (str, bytes)) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in layers
    ):
        raise LayerMismatchError(f"layers must be a sequence of integers, got {layers!r}")
    wanted = [int(v) for v in layers]
    if len(set(wanted)) != len(wanted):
        twice = sorted({v for v in wanted if wanted.count(v) > 1})
        raise LayerMismatchError(f"layers names layer(s) {twice} twice; name each layer once")
    if any(v < 0 for v in wanted):
        raise LayerMismatchError(
            f"layers must be >= 0, got {[v for v in wanted if v < 0]}; layer numbers count "
            "blocks from 0"
        )
    if isinstance(activations, Activations):
        missing = [v for v in wanted if v not in collected]
        if missing:
            raise LayerMismatchError(
                f"layer {missing[0]} was not collected for {stream!r} (collected: {collected}); "
                "pick collected layers or collect that layer"
            )
        return x[[collected.index(v) for v in wanted]], wanted
    if len(wanted) != len(x):
        raise LayerMismatchError(
            f"got {len(wanted)} layer numbers for a stack of {len(x)} layers (its layer axis); "
            f"pass one layer number per row of the stack, or leave layers=None for 0..{len(x) - 1}"
        )
    return x, wanted


def _split(y: torch.Tensor, test_size: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified, seeded train/test split of row indices."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in (0, 1):
        rows = np.flatnonzero(y.numpy() == cls)
        rng.shuffle(rows)
        n_test = int(round(len(rows) * test_size))
        if n_test == 0 or n_test == len(rows):
            raise SingleClassError(
                f"class {cls} has {len(rows)} prompts, too few to hold out {test_size:.0%} and "
                "still train; add prompts or change test_size"
            )
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return torch.from_numpy(np.sort(np.concatenate(train))), torch.from_numpy(
        np.sort(np.concatenate(test))
    )


def _evaluate(
    scores: torch.Tensor, y: torch.Tensor, layers: Sequence[int], *, n_boot: int, seed: int
) -> ProbeSweep:
    """Accuracy, AUROC and bootstrap intervals from held-out logits [n_layers, n_test]."""
    correct = ((scores > 0).long() == y[None]).double()
    acc = correct.mean(1)
    two = len(torch.unique(y)) == 2
    auroc = [float(roc_auc_score(y.numpy(), s.numpy())) if two else float("nan") for s in scores]
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        idx = torch.from_numpy(rng.integers(0, len(y), size=(n_boot, len(y))))
        boot = correct[:, idx].mean(-1)  # [n_layers, n_boot]
        low, high = boot.quantile(0.025, dim=1), boot.quantile(0.975, dim=1)
    else:
        low = high = acc
    # Ties in accuracy (common at 100%) go to the layer with the lowest held-out log-loss.
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        scores, y[None].expand_as(scores).to(scores.dtype), reduction="none"
    ).mean(1)
    best = min(range(len(acc)), key=lambda i: (-float(acc[i]), float(loss[i]), i))
    return ProbeSweep(
        layers=tuple(int(l_) for l_ in layers),
        accuracy=tuple(float(a) for a in acc),
        auroc=tuple(auroc),
        accuracy_low=tuple(float(a) for a in low),
        accuracy_high=tuple(float(a) for a in high),
        best_layer=int(layers[best]),
        best_accuracy=float(acc[best]),
        n_train=0,
        n_test=len(y),
        backend="",
        coef=torch.empty(0),
        intercept=torch.empty(0),
    )


def fit_probes_per_layer(
    activations: Any,
    labels: Any,
    *,
    stream: str = "resid_post",
    position: str = "last",
    layers: Sequence[int] | None = None,
    test_size: float = 0.25,
    seed: int = 0,
    backend: Backend = "torch",
    C: float = 1.0,  # noqa: N803
    max_iter: int = 200,
    tol: float = 1e-4,
    n_boot: int = 200,
    device: str | None = None,
) -> ProbeSweep:
    """Fit one probe per layer on a stratified split and score it on the held-out rows.

    Args:
        activations: [n_layers, n, d_model] tensor/array, or `Activations` (then `stream` and
            `position` pick the stack).
        labels: 0/1 per prompt (1 = harmful).
        stream: Stream to stack when given `Activations`.
        position: Column to stack when given `Activations`.
        layers: With a stack, the layer number of each of its rows (one per row, distinct,
            >= 0; default 0..n_layers-1). With `Activations`, the collected layers to probe,
            in this order (default every collected layer).
        test_size: Held-out fraction, per class.
        seed: Seed of the split and of the bootstrap.
        backend: `"torch"` (batched) or `"sklearn"` (reference, layer by layer).
        C: Inverse L2 strength (scikit-learn convention).
        max_iter: Solver iterations at most.
        tol: Gradient tolerance.
        n_boot: Bootstrap resamples of the held-out rows for the 95% interval (0: none).
        device: Where the torch backend runs (e.g. "cuda"; default: where the activations are).

    Returns:
        The sweep, including the fitted weights.

    Raises:
        LayerMismatchError: `layers` does not fit the stack (see above); the message names
            both lengths or the missing layer.
        NonBinaryLabelsError: A label is neither 0 nor 1.
    """
    x = _stack(activations, stream, position)
    x, layers = _layer_rows(activations, x, layers, stream)
    y = check_inputs(x, labels)
    train, test = _split(y, test_size, seed)
    coef, intercept, _ = fit_layers(
        x[:, train], y[train], backend=backend, C=C, max_iter=max_iter, tol=tol, device=device
    )
    scores = layer_scores(x[:, test], coef, intercept)
    out = _evaluate(scores, y[test], layers, n_boot=n_boot, seed=seed)
    return replace(out, n_train=len(train), backend=backend, coef=coef, intercept=intercept)


def transfer_probes(
    train_acts: Any,
    train_labels: Any,
    test_acts: Any,
    test_labels: Any,
    *,
    backend: Backend = "torch",
    C: float = 1.0,  # noqa: N803
    n_boot: int = 200,
    seed: int = 0,
) -> ProbeSweep:
    """Train per-layer probes on every row of one condition and test on another condition.

    Both inputs are [n_layers, n, d_model] (or `Activations`, stacked on resid_post / last).
    """
    x = _stack(train_acts, None, "last")
    y = check_inputs(x, train_labels)
    coef, intercept, _ = fit_layers(x, y, backend=backend, C=C, max_iter=200, tol=1e-4)
    layers = train_acts.layers() if isinstance(train_acts, Activations) else list(range(x.shape[0]))
    sweep = ProbeSweep(
        layers=tuple(layers),
        accuracy=(),
        auroc=(),
        accuracy_low=(),
        accuracy_high=(),
        best_layer=int(layers[0]),
        best_accuracy=float("nan"),
        n_train=len(y),
        n_test=0,
        backend=backend,
        coef=coef,
        intercept=intercept,
    )
    out = sweep.transfer(test_acts, test_labels, n_boot=n_boot, seed=seed)
    best = int(np.argmax(out.accuracy))
    return replace(out, best_layer=out.layers[best], best_accuracy=out.accuracy[best])
