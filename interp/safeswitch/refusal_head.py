"""The SafeSwitch refusal head: a copy of the unembedding fine-tuned to refuse (docs/methods/safeswitch.md#the-refusal-head).

The body of the model stays frozen, so the post-final-norm states of the training sequences never
change: `head_data` runs one forward pass per (request, refusal) sequence and caches those states,
and `RefusalHead.fit` trains a copy of `W_U` (and of its bias, if the model has one) as a
multinomial logistic regression on the cache. Generating with the head replaces the logits with
`ln_final @ W'_U` through two forward hooks, so the head is an intervention value like the others.

Deliberate deviations from the released code: the loss covers the response tokens (and the
end-of-turn token) only, not the prompt tokens; the training sequences are rendered with the
deployment system prompt (`helpful` by default) rather than none, so the head sees the states it
meets at inference; responses are tokenised on their own and appended to the prompt ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._artifact import Artifact, ModelIdentity, Saved
from interp.chat import render
from interp.data.promptset import texts_of
from interp.errors import (
    ArtifactMismatchError,
    HeadShapeError,
    NotFittedError,
    PromptTooLongError,
)
from interp.generation import eos_token_ids
from interp.interventions.apply import Hook
from interp.model import weight_fingerprint
from interp.native import PassDone
from interp.safeswitch.refusal_pairs import RefusalPairs, refusal_pairs
from interp.sites import Site, logits_hook_name

__all__ = ["HeadData", "RefusalHead", "head_data", "unembedding"]

logger = logging.getLogger(__name__)


def _unembed_params(model: TransformerBridge) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The live unembedding weight [d_vocab, d_model] and bias (None when the head has none)."""
    params = dict(model.unembed.original_component.named_parameters())
    return params["weight"], params.get("bias")


def unembedding(model: TransformerBridge) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float32 copies of the model's unembedding weight [d_vocab, d_model] and bias (or None)."""
    weight, bias = _unembed_params(model)
    copy = weight.detach().to("cpu", torch.float32).clone()
    return copy, None if bias is None else bias.detach().to("cpu", torch.float32).clone()


def _softcap(model: TransformerBridge) -> float | None:
    cap = getattr(model.original_model.config, "final_logit_softcapping", None)
    return float(cap) if cap else None


def _fingerprint(weight: torch.Tensor) -> str:
    """The base unembedding's identity (`interp.model.weight_fingerprint`)."""
    return weight_fingerprint(weight)


def _end_of_turn(model: TransformerBridge) -> int:
    """The token that ends an assistant turn in the chat template (an EOS the decoder stops at)."""
    eos = eos_token_ids(model)
    tok = model.tokenizer
    sentinel = "\u2063END\u2063"
    try:
        text = tok.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": sentinel}],
            tokenize=False,
        )
        suffix = str(text).split(sentinel, 1)[1]
        ids = tok(suffix, add_special_tokens=False)["input_ids"]
        found = next((int(i) for i in ids if int(i) in eos), None)
    except Exception:  # noqa: BLE001 - templates raise arbitrary errors on unusual roles
        found = None
    return found if found is not None else min(eos)


def _sequences(
    model: TransformerBridge, pairs: RefusalPairs, system: str | None
) -> list[tuple[list[int], int]]:
    """Prompt ids + response ids + end of turn, and the prompt length, per pair."""
    tok = model.tokenizer
    end = _end_of_turn(model)
    n_ctx = int(model.cfg.n_ctx)
    out = []
    for i, (request, response) in enumerate(zip(pairs.requests, pairs.responses, strict=True)):
        prompt = list(tok(render(model, request, system), add_special_tokens=False)["input_ids"])
        answer = list(tok(response.strip(), add_special_tokens=False)["input_ids"]) + [end]
        if len(prompt) + len(answer) > n_ctx:
            raise PromptTooLongError(
                f"training pair {i} has {len(prompt) + len(answer)} tokens but the model's "
                f"context is {n_ctx}; shorten its request or response"
            )
        out.append((prompt + answer, len(prompt)))
    return out


@dataclass(frozen=True)
class HeadData:
    """Cached post-final-norm states of refusal sequences and the next tokens they predict.

    Attributes:
        states: `ln_final` at every position that predicts a response token [n_tok, d_model].
        targets: The response token predicted there (end of turn included) [n_tok].
        pair_index: Which training pair each row comes from [n_tok].
        data_hash: `RefusalPairs.hash()` of the pairs.
        system: System prompt the sequences were rendered with.
    """

    states: torch.Tensor
    targets: torch.Tensor
    pair_index: torch.Tensor
    data_hash: str
    system: str | None

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@torch.no_grad()
def head_data(
    model: TransformerBridge,
    pairs: RefusalPairs,
    *,
    system: str | None = "helpful",
    batch_size: int = 32,
) -> HeadData:
    """Run each (request, refusal) sequence through the frozen model once and cache `ln_final`.

    Sequences are right padded, so every real token sees exactly what it sees alone.
    """
    seqs = _sequences(model, pairs, system)
    pad = model.tokenizer.pad_token_id
    pad = int(pad if pad is not None else _end_of_turn(model))
    states, targets, index = [], [], []
    captured: list[torch.Tensor] = []

    def grab(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TransformerLens signature
        captured.append(x.detach())
        raise PassDone  # the unembedding's logits are not needed

    device = model.cfg.device
    with model.hooks(fwd_hooks=[(Site("ln_final").hook_name, grab)]):
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            tokens = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (ids, _) in enumerate(chunk):
                tokens[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
            captured.clear()
            with suppress(PassDone):
                model(tokens.to(device), attention_mask=mask.to(device), return_type=None)
            hidden = captured[-1].to("cpu", torch.float32)
            for row, (ids, n_prompt) in enumerate(chunk):
                states.append(hidden[row, n_prompt - 1 : len(ids) - 1])
                targets.append(torch.tensor(ids[n_prompt:]))
                index.append(torch.full((len(ids) - n_prompt,), start + row))
    return HeadData(
        states=torch.cat(states),
        targets=torch.cat(targets),
        pair_index=torch.cat(index),
        data_hash=pairs.hash(),
        system=system,
    )


def _logits(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cap: float | None
) -> torch.Tensor:
    logits = h @ weight.T
    if bias is not None:
        logits = logits + bias
    if cap is not None:
        # Soft-capping families (Gemma 2) apply it after the unembedding; so must the cache path.
        logits = cap * torch.tanh(logits / cap)
    return logits


def _replace_logits(
    weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A hook pair: remember `ln_final`'s output, then swap the logits for the head's."""
    state: dict[str, torch.Tensor] = {}
    converted: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor | None]] = {}

    def grab(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TransformerLens signature
        state["h"] = x

    def swap(logits: torch.Tensor, hook: Any) -> torch.Tensor:  # noqa: ARG001 - TL signature
        h = state.pop("h")
        key = (h.device, h.dtype)
        if key not in converted:
            converted[key] = (
                weight.to(h.device, h.dtype),
                None if bias is None else bias.to(h.device, h.dtype),
            )
        w, b = converted[key]
        return _logits(h, w, b, None).to(logits.dtype)

    return grab, swap


class RefusalHead(Artifact):
    """A copy of the unembedding trained to refuse, with every other parameter frozen.

    `save(dir)` / `RefusalHead.load(dir, model)` (`interp._artifact.Artifact`); loading also
    checks the head's shape against the model's unembedding (`HeadShapeError`) and, unless
    `allow_other_model`, that the model's unembedding is the one the head was copied from.

    Args:
        system: System prompt the training sequences are rendered with (the prompt the head
            is deployed under; SafeSwitch uses the helpful prompt).
        epochs: Passes over the cached tokens.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_tokens: Cached tokens per optimisation step.
        seed: Seed of the data order.

    Attributes:
        weight_: The trained head [d_vocab, d_model] (HF `lm_head` layout).
        bias_: Its bias [d_vocab], or None when the model's head has none.
        losses_: Mean training loss per epoch, after the epoch; `initial_loss_` before training.
        pairs_: The training pairs (after `fit`); `n_pairs_`, `pairs_source_` and
            `data_hash_` (their hash) also after `load`.
        n_params_: Trained parameter count; `fingerprint_` identifies the base unembedding,
            `model_` the whole model (`ModelIdentity`: name, width, template, fingerprint).
        transferred_from_: After `load(..., allow_other_model=True)` onto a model with other
            weights, the name and fingerprint of the model it was trained on; else None.
    """

    # Format 1 had no common header ("format_version", "model" instead of "model_name").
    _KIND, _VERSION, _WHAT = "refusal_head", 2, "refusal head"

    def __init__(
        self,
        system: str | None = "helpful",
        epochs: int = 8,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_tokens: int = 256,
        seed: int = 0,
    ) -> None:
        self.system = system
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_tokens = batch_tokens
        self.seed = seed

    def fit(
        self,
        model: TransformerBridge,
        requests: RefusalPairs | Sequence[str] | Any,
        responses: Sequence[str] | None = None,
    ) -> RefusalHead:
        """Train the head on the model's own refusals of `requests`, or on given pairs.

        Args:
            model: The bridge (left unchanged).
            requests: `RefusalPairs`, or user messages (strings or a `PromptSet`).
            responses: One refusal per request; when None the targets are the model's own
                refusals under the warning prompt (`refusal_pairs`).
        """
        if isinstance(requests, RefusalPairs):
            pairs = requests
        elif responses is not None:
            texts = texts_of(requests)
            pairs = RefusalPairs(tuple(texts), tuple(str(r) for r in responses))
        else:
            pairs = refusal_pairs(model, requests)
        data = head_data(model, pairs, system=self.system)
        weight, bias = unembedding(model)
        self.fingerprint_ = _fingerprint(weight)
        self.model_ = ModelIdentity.of(model)
        self.transferred_from_: dict[str, str] | None = None
        self.softcap_ = _softcap(model)
        self._train(data, weight, bias)
        self.pairs_ = pairs
        self.n_pairs_, self.pairs_source_ = len(pairs), pairs.source
        self.data_hash_ = data.data_hash
        self.n_tokens_ = len(data)
        return self

    def _train(self, data: HeadData, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        w = torch.nn.Parameter(weight.clone())
        b = None if bias is None else torch.nn.Parameter(bias.clone())
        params = [w] if b is None else [w, b]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(self.seed)
        n = len(data)
        self.initial_loss_ = self._loss(data, w, b)
        self.losses_: list[float] = []
        with torch.enable_grad():
            for _ in range(self.epochs):
                total = 0.0
                for rows in torch.randperm(n, generator=gen).split(self.batch_tokens):
                    opt.zero_grad()
                    logits = _logits(data.states[rows], w, b, self.softcap_)
                    loss = torch.nn.functional.cross_entropy(logits, data.targets[rows])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(rows)
                self.losses_.append(total / n)
        self.weight_ = w.detach()
        self.bias_ = None if b is None else b.detach()
        self.n_params_ = int(w.numel() + (0 if b is None else b.numel()))

    @torch.no_grad()
    def _loss(self, data: HeadData, w: torch.Tensor, b: torch.Tensor | None) -> float:
        logits = _logits(data.states, w, b, self.softcap_)
        return float(torch.nn.functional.cross_entropy(logits, data.targets))

    def _check(self) -> None:
        if not hasattr(self, "weight_"):
            raise NotFittedError("this RefusalHead is not fitted; call fit(...) or load(...)")

    def _check_model(self, model: TransformerBridge, weights: bool | None = None) -> None:
        """Shape, then (`weights`; by default unless transferred) the base unembedding."""
        weight, _ = _unembed_params(model)
        if tuple(weight.shape) != tuple(self.weight_.shape):
            raise HeadShapeError(
                f"the refusal head has shape {tuple(self.weight_.shape)} (d_vocab, d_model) but "
                f"the model's unembedding is {tuple(weight.shape)}: the head belongs to another "
                "model; train one for this model with RefusalHead().fit(model, ...)"
            )
        # A head loaded with allow_other_model=True is used on another model on purpose.
        if weights is None:
            weights = getattr(self, "transferred_from_", None) is None
        if weights and _fingerprint(weight) != self.fingerprint_:
            raise ArtifactMismatchError(
                "the refusal head was trained on another model (the model's unembedding differs "
                "from the one the head was copied from); train a head for this model"
            )

    def loss(self, data: HeadData) -> float:
        """Mean next-token cross-entropy of the trained head on cached states."""
        self._check()
        return self._loss(data, self.weight_, self.bias_)

    @torch.no_grad()
    def bridge_loss(self, model: TransformerBridge, pairs: RefusalPairs) -> float:
        """The same loss through the bridge itself (the head swapped in by hooks), no cache."""
        self._check()
        total, count = 0.0, 0
        with model.hooks(fwd_hooks=self.hooks(model)):
            for ids, n_prompt in _sequences(model, pairs, self.system):
                tokens = torch.tensor([ids], device=model.cfg.device)
                logits = model(tokens, return_type="logits")[0].float().cpu()
                target = tokens[0, n_prompt:].cpu()
                loss = torch.nn.functional.cross_entropy(
                    logits[n_prompt - 1 : len(ids) - 1], target, reduction="sum"
                )
                total, count = total + float(loss), count + len(target)
        return total / count

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """Hooks that make `model` emit the head's logits instead of its own."""
        self._check()
        self._check_model(model)
        grab, swap = _replace_logits(self.weight_, self.bias_)
        return [(Site("ln_final").hook_name, grab), (logits_hook_name(), swap)]

    def params_fraction(self, model: TransformerBridge) -> float:
        """Trained head parameters over the model's parameters (tied weights counted once)."""
        self._check()
        return self.n_params_ / sum(p.numel() for p in model.parameters())

    def _payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        self._check()
        tensors = {"weight": self.weight_}
        if self.bias_ is not None:
            tensors["bias"] = self.bias_
        meta = {
            "d_vocab": int(self.weight_.shape[0]),
            "unembedding_fingerprint": self.fingerprint_,
            "softcap": self.softcap_,
            "data_hash": self.data_hash_,
            "n_pairs": self.n_pairs_,
            "n_tokens": self.n_tokens_,
            "pairs_source": self.pairs_source_,
            "initial_loss": self.initial_loss_,
            "losses": self.losses_,
            "params": {
                k: getattr(self, k)
                for k in ("system", "epochs", "lr", "weight_decay", "batch_tokens", "seed")
            },
        }
        return meta, tensors

    @classmethod
    def _from_saved(cls, saved: Saved) -> RefusalHead:
        head = cls(**saved.meta["params"])
        head.weight_, head.bias_ = saved.tensors["weight"], saved.tensors.get("bias")
        head.fingerprint_, head.softcap_ = (
            saved.meta["unembedding_fingerprint"],
            saved.meta["softcap"],
        )
        head.model_ = ModelIdentity.from_meta(saved.meta)
        head.data_hash_, head.n_tokens_ = saved.meta["data_hash"], saved.meta["n_tokens"]
        head.n_pairs_, head.pairs_source_ = saved.meta["n_pairs"], saved.meta["pairs_source"]
        head.initial_loss_, head.losses_ = saved.meta["initial_loss"], saved.meta["losses"]
        head.n_params_ = int(sum(t.numel() for t in saved.tensors.values()))
        try:
            head._check_model(saved.model, weights=saved.check_weights)
        except ArtifactMismatchError as err:
            raise type(err)(
                f"refusal head {saved.path} (trained on {head.model_.name!r}): {err}"
            ) from None
        return head
