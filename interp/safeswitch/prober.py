"""The SafeSwitch two-stage prober (docs/methods/safeswitch.md#the-two-stage-prober) on the post-final-norm state.

Stage 1 asks "is the request harmful?" from `ln_final` at the last prompt token; stage 2 asks
"will the model comply?" from `ln_final` after `n_decode` greedily decoded answer tokens. The
answer is flagged unsafe iff both probabilities reach the threshold. Compliance labels come
from the model's own greedy answers, judged by the DRO substring judge.

Deliberate deviations from the released code: the heads are trained on logits (no double
softmax), with full-batch AdamW on standardised features; stage-2 features keep the token ids
of the decoded prefix (no detokenise/retokenise round trip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._artifact import Artifact, ModelIdentity, Saved
from interp._types import Bool
from interp.chat import ChatBatch
from interp.data.promptset import texts_of
from interp.errors import ArtifactMismatchError, NotFittedError, ThresholdError
from interp.evaluation import Judge, SubstringJudge
from interp.generation import batched, cut_at_eos, eos_token_ids, greedy_decode, input_order
from interp.probes import as_tensor, check_inputs
from interp.sites import Site

__all__ = ["ProberData", "SafeSwitchProber", "check_threshold", "prober_features"]


def check_threshold(name: str, value: float, fix: str = "pass a value between 0 and 1") -> float:
    """`value` as a float when it is a probability in [0, 1]; else a `ThresholdError`.

    Example:
        >>> check_threshold("threshold", 0.25)
        0.25
    """
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ThresholdError(
            f"SafeSwitch {name} must be a probability in [0, 1], got {value}; {fix}"
        )
    return value


@dataclass(frozen=True)
class ProberData:
    """Features and labels for the two-stage prober, from one greedy decoding pass.

    Attributes:
        stage1: `ln_final` at the last prompt token [n, d_model].
        stage2: `ln_final` at the `n_decode`-th decoded token [n, d_model].
        complied: 1 where the judge found the full greedy answer compliant (not a refusal).
        responses: The greedy answers.
        n_decode: Decoded tokens before the stage-2 state.
    """

    stage1: torch.Tensor
    stage2: torch.Tensor
    complied: tuple[int, ...]
    responses: tuple[str, ...]
    n_decode: int


def _decode_batch(
    model: TransformerBridge, batch: ChatBatch, n_decode: int, max_new: int
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    states: list[torch.Tensor] = []

    def grab(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TransformerLens signature
        states.append(x[:, -1].detach().to("cpu", torch.float32))

    tokens = greedy_decode(
        model,
        batch,
        max_new_tokens=max(max_new, n_decode + 1),
        fwd_hooks=[(Site("ln_final").hook_name, grab)],
        stop_at_eos=False,
    )
    # Forward call i sees the prompt plus i decoded tokens: call 0 is the last prompt token.
    return states[0], states[n_decode], tokens.tolist()


def prober_features(
    model: TransformerBridge,
    prompts: Sequence[str] | Any,
    *,
    system: str | None = "helpful",
    n_decode: int = 3,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    judge: Judge | None = None,
    progress: bool = False,
) -> ProberData:
    """Decode each prompt greedily once, reading both stages' features and the compliance label.

    Args:
        model: The bridge.
        prompts: User messages (strings or a `PromptSet`).
        system: System prompt or safety-prompt name (SafeSwitch uses the helpful prompt).
        n_decode: Answer tokens decoded before the stage-2 state (3 in SafeSwitch).
        max_new_tokens: Length of the answer judged for the compliance label.
        batch_size: Prompts per decoding batch.
        judge: Refusal judge (the DRO substring judge by default).
        progress: Show a progress bar.
    """
    texts = texts_of(prompts)
    chosen = judge if judge is not None else SubstringJudge("dro")
    eos = eos_token_ids(model)
    s1: list[torch.Tensor] = []
    s2: list[torch.Tensor] = []
    answers: list[str] = []
    order: list[int] = []
    # Batches grouped by length (`batched`): a 470-token jailbreak wrapper would otherwise pad
    # every short request of its batch; the rows are put back in input order below.
    chunks = batched(model, texts, system, batch_size, progress=progress, desc="prober features")
    for rows_in, batch in chunks:
        a, b, rows = _decode_batch(model, batch, n_decode, max_new_tokens)
        s1.append(a)
        s2.append(b)
        order.extend(rows_in)
        answers.extend(
            model.tokenizer.decode(cut_at_eos(row, eos), skip_special_tokens=True) for row in rows
        )
    back = input_order(order)
    answers = [answers[int(i)] for i in back]
    refused = chosen.is_refusal(answers, texts)
    return ProberData(
        stage1=torch.cat(s1)[back],
        stage2=torch.cat(s2)[back],
        complied=tuple(int(not r) for r in refused),
        responses=tuple(answers),
        n_decode=n_decode,
    )


def _head(kind: str, d_model: int, hidden: int) -> torch.nn.Module:
    if kind == "linear":
        return torch.nn.Linear(d_model, 1)
    if kind == "mlp":
        return torch.nn.Sequential(
            torch.nn.Linear(d_model, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )
    raise ValueError(f"unknown prober kind {kind!r}; use 'linear' or 'mlp'")


class SafeSwitchProber(Artifact):
    """Two binary heads on `ln_final` states and the combined unsafe-behaviour flag.

    `save(dir)` / `SafeSwitchProber.load(dir, model)` (`interp._artifact.Artifact`); loading
    also rejects a saved threshold outside [0, 1] (`ThresholdError`), and a directory saved
    in the older format 1 (`ArtifactVersionError`).

    Args:
        kind: `"mlp"` (d -> hidden -> ReLU -> 1, as in SafeSwitch) or `"linear"`.
        hidden: Hidden width of the MLP head.
        threshold: A stage fires when its probability is >= this.
        n_decode: Decoded tokens before the stage-2 state (recorded with the artifact).
        epochs: Full-batch AdamW steps per head.
        lr: Learning rate.
        weight_decay: AdamW weight decay.
        seed: Seed of the initialisation.

    Attributes:
        stage1_: The harmfulness head; `stage2_`: the compliance head.
        mean_, scale_: Feature standardisation [2, d_model] (one row per stage).
        d_model_: Width of the features seen in fit.
        model_: The `ModelIdentity` of the model the features came from (`fit(..., model=)`;
            only the width when fitted on bare tensors).
        transferred_from_: After `load(..., allow_other_model=True)` onto a model with other
            weights, the name and fingerprint of the model it was trained on; else None.

    Raises:
        ThresholdError: `threshold` is not a probability in [0, 1] (NaN included).
    """

    # Format 1 had no common header ("format_version", "model" instead of "model_name").
    _KIND, _VERSION, _WHAT = "prober", 2, "SafeSwitch prober"

    def __init__(
        self,
        kind: Literal["mlp", "linear"] = "mlp",
        hidden: int = 64,
        threshold: float = 0.5,
        n_decode: int = 3,
        epochs: int = 300,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        seed: int = 42,
    ) -> None:
        check_threshold("prober threshold", threshold)
        self.kind = kind
        self.hidden = hidden
        self.threshold = threshold
        self.n_decode = n_decode
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def _train(self, x: torch.Tensor, y: torch.Tensor, offset: int) -> torch.nn.Module:
        gen = torch.Generator().manual_seed(self.seed + offset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            head = _head(self.kind, x.shape[1], self.hidden).double()
        opt = torch.optim.AdamW(head.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        target = y.double()
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x)[:, 0], target)
            loss.backward()
            opt.step()
        return head.eval().requires_grad_(False)

    def fit(
        self,
        stage1: Any,
        harmful: Any,
        stage2: Any,
        complied: Any,
        *,
        model: TransformerBridge | None = None,
    ) -> SafeSwitchProber:
        """Fit both heads: stage 1 on (stage1 features, harmful), stage 2 on (stage2, complied).

        Args:
            stage1: Stage-1 features [n, d_model] (`ProberData.stage1`).
            harmful: 1 for a harmful request, 0 for a harmless one.
            stage2: Stage-2 features [n, d_model] (`ProberData.stage2`).
            complied: 1 where the model complied.
            model: The bridge the features were read from; its identity is recorded for
                `save` / `load` (without it only the width is known, and `load` warns that
                the model cannot be checked).

        Raises:
            ArtifactMismatchError: The features' width is not `model`'s d_model.
        """
        x1, x2 = as_tensor(stage1).double(), as_tensor(stage2).double()
        y1, y2 = check_inputs(x1, harmful), check_inputs(x2, complied)
        width = int(x1.shape[1])
        self.model_ = ModelIdentity(d_model=width) if model is None else ModelIdentity.of(model)
        if self.model_.d_model != width:
            raise ArtifactMismatchError(
                f"the prober's features have width {width} but the model {self.model_.name!r} "
                f"has d_model {self.model_.d_model}; read the features from this model"
            )
        stats = []
        for x in (x1, x2):
            mean, std = x.mean(0), x.std(0, correction=0)
            stats.append((mean, torch.where(std > 0, std, torch.ones_like(std))))
        self.mean_ = torch.stack([m for m, _ in stats])
        self.scale_ = torch.stack([s for _, s in stats])
        self.d_model_ = int(x1.shape[1])
        self.transferred_from_: dict[str, str] | None = None
        self.stage1_ = self._train((x1 - self.mean_[0]) / self.scale_[0], y1, 0)
        self.stage2_ = self._train((x2 - self.mean_[1]) / self.scale_[1], y2, 1)
        return self

    def _check(self) -> None:
        if not hasattr(self, "stage1_"):
            raise NotFittedError("this SafeSwitchProber is not fitted; call fit(...) or load(...)")

    def predict_proba(self, stage1: Any, stage2: Any | None = None) -> tuple[torch.Tensor, ...]:
        """P(harmful) from stage-1 features, and P(complies) from stage-2 features if given."""
        self._check()
        out = []
        for i, (x, head) in enumerate(((stage1, self.stage1_), (stage2, self.stage2_))):
            if x is None:
                continue
            xt = as_tensor(x).double()
            check_inputs(xt, None)
            if xt.shape[1] != self.d_model_:
                raise ArtifactMismatchError(
                    f"the prober expects d_model {self.d_model_}, got features of width "
                    f"{xt.shape[1]}: it was trained on another model"
                )
            out.append(torch.sigmoid(head((xt - self.mean_[i]) / self.scale_[i])[:, 0]))
        return tuple(out)

    def flag(self, stage1: Any, stage2: Any) -> torch.Tensor:
        """The unsafe-behaviour flag: both stages >= threshold (bool [n])."""
        p1, p2 = self.predict_proba(stage1, stage2)
        return (p1 >= self.threshold) & (p2 >= self.threshold)

    def hits(
        self, data: ProberData, harmful: Any
    ) -> tuple[Bool[torch.Tensor, " n"], Bool[torch.Tensor, " n"]]:
        """Per row, whether stage 1 (harmful?) and stage 2 (will comply?) predict their label.

        The counts behind `evaluate`'s accuracies (`hits[0].sum()` of `len(harmful)` rows).
        """
        p1, p2 = self.predict_proba(data.stage1, data.stage2)
        y1 = torch.as_tensor(np.asarray(harmful, dtype=np.int64))
        y2 = torch.as_tensor(data.complied)
        return (p1 >= self.threshold).long() == y1, (p2 >= self.threshold).long() == y2

    def evaluate(self, data: ProberData, harmful: Any) -> dict[str, float]:
        """Stage accuracies and the F1 of the flag against harmful AND complied."""
        p1, p2 = self.predict_proba(data.stage1, data.stage2)
        y1 = torch.as_tensor(np.asarray(harmful, dtype=np.int64))
        y2 = torch.as_tensor(data.complied)
        truth = (y1 == 1) & (y2 == 1)
        flag = (p1 >= self.threshold) & (p2 >= self.threshold)
        tp = int((flag & truth).sum())
        denom = int(flag.sum()) + int(truth.sum())
        hit1, hit2 = self.hits(data, harmful)
        return {
            "stage1_accuracy": round(float(hit1.double().mean()), 4),
            "stage2_accuracy": round(float(hit2.double().mean()), 4),
            "flag_f1": round(2 * tp / denom, 4) if denom else 1.0,
        }

    def _payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        self._check()
        tensors = {"mean": self.mean_, "scale": self.scale_}
        for name, head in (("stage1", self.stage1_), ("stage2", self.stage2_)):
            tensors |= {f"{name}.{k}": v for k, v in head.state_dict().items()}
        meta = {
            "site": Site("ln_final").label,
            "params": {k: getattr(self, k) for k in ("kind", "hidden", "threshold", "n_decode")},
            "training": {k: getattr(self, k) for k in ("epochs", "lr", "weight_decay", "seed")},
        }
        return meta, tensors

    @classmethod
    def _from_saved(cls, saved: Saved) -> SafeSwitchProber:
        prober = cls(**saved.meta["params"], **saved.meta["training"])
        prober.mean_, prober.scale_ = saved.tensors["mean"], saved.tensors["scale"]
        prober.model_ = ModelIdentity.from_meta(saved.meta)
        prober.d_model_ = prober.model_.d_model
        for name in ("stage1", "stage2"):
            head = _head(prober.kind, prober.d_model_, prober.hidden).double()
            head.load_state_dict(
                {
                    k.split(".", 1)[1]: v
                    for k, v in saved.tensors.items()
                    if k.startswith(name + ".")
                }
            )
            setattr(prober, f"{name}_", head.eval().requires_grad_(False))
        return prober
