"""`SoftPrompt`: a human safety prompt turned into trainable embeddings and optimised with DRO.

The soft prompt sits exactly where the human prompt's tokens sit in the rendered chat: the
template's system slot, or the start of the user turn for templates without a system role
(Gemma folds the system text into the user message). Prompts are rendered *with* the human
prompt, and a forward hook on the embedding output overwrites the embeddings at those token
positions with the soft prompt. The human prompt's tokens therefore act as the placeholders,
and an untrained soft prompt (initialised from those very embeddings, captured at the same
hook, so Gemma's embedding scale is included) reproduces the human prompt's logits exactly.

Training (`fit`) follows DRO (docs/methods/dro.md#the-dro-objective-and-training): every model parameter is frozen, the
base states f(x, s0) are computed once, and AdamW moves the embeddings to minimise
`dro_loss`. Generation runs through the shared KV-cached loop (`greedy_decode`); the hook
only edits the prompt pass (later steps see one token and are left alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from interp._artifact import Artifact, ModelIdentity, Saved
from interp._checks import check_int, check_real, check_reals
from interp.chat import ChatBatch, encode
from interp.data.promptset import texts_of
from interp.dro.anchor import FINAL_SITE, AnchorSpace, check_prompt_name, split_kinds, texts_hash
from interp.dro.loss import DEFAULT_LOSS_WEIGHTS, dro_loss
from interp.errors import (
    ArtifactMismatchError,
    InterpError,
    NonFiniteLossError,
    NotFittedError,
    ParameterError,
)
from interp.generation import Completions, batched, decode_with_states, input_order
from interp.interventions.apply import Hook
from interp.native import PassDone, forward_session
from interp.sites import Site

__all__ = ["SoftPrompt", "SoftPromptError", "frozen", "soft_positions"]

logger = logging.getLogger(__name__)

EMBED_SITE = Site("embed")

#: `SoftPrompt`'s default padded tokens per forward-backward pass. On smollm2-135m-safety
#: (30 layers, width 576, 2 CPU cores) a step of 32 training queries, jailbreak wrappers of
#: up to 400 tokens among them, peaked at 23.2 GB in one pass; see docs/methods/dro.md.
MAX_BATCH_TOKENS = 2048


class SoftPromptError(InterpError, ValueError):
    """A soft prompt cannot be placed in a rendered prompt (its tokens are not found intact)."""


def _span(text: str, system_text: str) -> tuple[int, int]:
    """Character span of the system prompt's text in a rendered prompt (first occurrence)."""
    needle = system_text.strip()
    start = text.find(needle)
    if start < 0:
        raise SoftPromptError(
            "the safety prompt's text does not appear in the rendered chat; the chat template "
            "rewrites system messages, so a soft prompt cannot be placed for this model"
        )
    return start, start + len(needle)


def soft_positions(model: TransformerBridge, batch: ChatBatch, system_text: str) -> torch.Tensor:
    """Positions of the system prompt's tokens in each row of a left-padded batch: [b, n].

    A token belongs to the prompt when its characters lie inside the prompt's text; tokens that
    straddle the boundary (merged with template text) stay fixed.
    """
    tokenizer = model.tokenizer
    width = batch.tokens.shape[1]
    rows: list[list[int]] = []
    for i, text in enumerate(batch.texts):
        start, end = _span(text, system_text)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        pad = width - len(offsets)
        inside = [j for j, (a, b) in enumerate(offsets) if a >= start and b <= end and b > a]
        if not inside or inside != list(range(inside[0], inside[-1] + 1)):
            raise SoftPromptError(
                f"row {i}: the safety prompt's tokens are not one contiguous run in the "
                "rendered chat; this tokenizer cannot host a soft prompt at that place"
            )
        rows.append([pad + j for j in inside])
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise SoftPromptError(
            f"the safety prompt tokenises to different lengths {sorted(lengths)} across prompts "
            "(its last token merges with the user text); strip the prompts' leading whitespace"
        )
    return torch.tensor(rows, dtype=torch.long)


def _inject_fn(theta: torch.Tensor, positions: torch.Tensor, width: int) -> Callable[..., Any]:
    """Embedding hook writing `theta` [n, d] at `positions` [b, n] of the prompt pass."""

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor | None:  # noqa: ARG001 - TL signature
        if x.shape[1] != width:
            # A KV-cached decoding step ([b, 1, d]): the prompt is already in the cache.
            return None
        idx = positions.to(x.device)
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        out = x.clone()
        out[rows, idx] = theta.to(x.device, x.dtype).expand(x.shape[0], -1, -1)
        return out

    return hook


@contextmanager
def frozen(model: TransformerBridge) -> Iterator[None]:
    """Turn `requires_grad` off on every model parameter for the block, then restore it."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


def _final(model: TransformerBridge, batch: ChatBatch, hooks: Sequence[Hook]) -> torch.Tensor:
    """f(x) at each row's last prompt token with `hooks` active (keeps the autograd graph).

    The pass ends at the final norm (`PassDone`): the unembedding and its [batch, pos,
    d_vocab] logits are never computed. It runs on the native path when the hooks allow
    (`interp.native.forward_session`). The states come back in float32 at least (bf16 / fp16
    models included), so the DRO loss and its gradient are accumulated in float32; a float32
    model's states are unchanged.
    """
    got: dict[str, torch.Tensor] = {}
    rows = torch.arange(len(batch), device=batch.tokens.device)

    def grab(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TL signature
        got["f"] = x[rows, batch.last_index]
        raise PassDone

    try:
        with forward_session(model, [*hooks, (FINAL_SITE.hook_name, grab)]) as step:
            step(batch.tokens, batch.attention_mask, logits_to_keep=1, use_cache=False)
    except PassDone:
        pass
    f = got["f"]
    return f if f.dtype in (torch.float32, torch.float64) else f.to(torch.float32)


class SoftPrompt(Artifact):
    """A human safety prompt as trainable embeddings, optimised with DRO (estimator contract).

    `save(dir)` / `SoftPrompt.load(dir, model)` (`interp._artifact.Artifact`); loading also
    checks, unless `allow_other_model`, that the model embeds the initial prompt as the one it
    was trained on, and reads the `<p>.json` / `<p>.safetensors` pair that interp wrote before
    soft prompts were directories.

    Args:
        init: Name of the human safety prompt it starts from (`interp.SAFETY_PROMPTS`).
        epochs: Passes over the training queries.
        batch_size: Queries per optimisation step.
        max_batch_tokens: Padded tokens per forward-backward pass at most (rows x longest
            prompt; a longer prompt runs alone). A step's queries are grouped by length into
            passes of at most this size and their gradients summed, so the step is the one a
            single pass over the batch would take (to float rounding) while memory scales
            with this budget, not with `batch_size` times the longest jailbreak wrapper.
            None: one pass per step.
        lr: AdamW learning rate (1e-3 in DRO).
        weight_decay: AdamW weight decay (PyTorch's default 0.01, as in DRO).
        grad_clip: Max gradient norm of the embeddings per step (1.0 in DRO).
        loss_weights: (w_r, w_h, w_U) of L_r, L_h and L_U.
        seed: Seed of the shuffling.
        progress: Show a progress bar over steps.

    Raises:
        ParameterError: `epochs`, `batch_size` or `max_batch_tokens` below 1, `lr` or
            `grad_clip` not > 0, a negative `weight_decay`, or `loss_weights` not three finite
            numbers >= 0.

    Attributes:
        embeddings_: The learned soft prompt [n_tokens, d_model] (float32, CPU).
        initial_embeddings_: The human prompt's embeddings it started from.
        token_ids_: The human prompt's token ids the soft prompt replaces.
        anchor_: The `AnchorSpace` it was trained against (None if never trained).
        history_: Loss terms per optimisation step (`total`, `refusal`, `harm`, `off_subspace`).
        n_steps_: Optimisation steps taken.
        model_: The `ModelIdentity` of the model it belongs to (name, width, chat template,
            fingerprint).
        transferred_from_: After `load(..., allow_other_model=True)` onto a model with other
            weights, the name and fingerprint of the model it was trained on; else None.
        data_hash_: SHA-256 of the training texts and labels ("" if untrained).
    """

    _KIND, _VERSION, _WHAT = "soft_prompt", 1, "soft prompt"
    _LEGACY_PAIR = True

    def __init__(
        self,
        init: str = "default",
        *,
        epochs: int = 40,
        batch_size: int = 50,
        max_batch_tokens: int | None = MAX_BATCH_TOKENS,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        grad_clip: float = 1.0,
        loss_weights: tuple[float, float, float] = DEFAULT_LOSS_WEIGHTS,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        check_int(epochs, "SoftPrompt epochs")
        check_int(batch_size, "SoftPrompt batch_size")
        if max_batch_tokens is not None:
            check_int(max_batch_tokens, "SoftPrompt max_batch_tokens")
        if not float(lr) > 0:  # NaN fails too; inf is allowed (it tests the non-finite guard)
            raise ParameterError(f"SoftPrompt lr must be a number > 0, got {lr!r}")
        check_real(weight_decay, "SoftPrompt weight_decay", low=0)
        check_real(grad_clip, "SoftPrompt grad_clip", low=0, low_open=True)
        check_reals(loss_weights, "SoftPrompt loss_weights", 3, low=0)
        self.init = init
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.loss_weights = loss_weights
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------ placement

    @property
    def system_text(self) -> str:
        """The text of the human prompt the soft prompt replaces."""
        return check_prompt_name(self.init)

    def encode(self, model: TransformerBridge, users: Sequence[str] | Any) -> ChatBatch:
        """Render user messages with the human prompt (its tokens are the placeholders)."""
        return encode(model, users, self.system_text).to(model.cfg.device)

    def initialize(self, model: TransformerBridge) -> SoftPrompt:
        """Set the embeddings to the human prompt's own (no training) and return self."""
        batch = self.encode(model, ["Hello"])
        positions = soft_positions(model, batch, self.system_text)
        got: dict[str, torch.Tensor] = {}

        def grab(x: torch.Tensor, hook: Any) -> None:  # noqa: ARG001 - TL signature
            got["e"] = x[0, positions[0].to(x.device)].detach().to("cpu", torch.float32)

        with torch.no_grad():
            model.run_with_hooks(
                batch.tokens, attention_mask=batch.attention_mask, return_type=None,
                fwd_hooks=[(EMBED_SITE.hook_name, grab)], stop_at_layer=1,
            )  # fmt: skip
        self.initial_embeddings_ = got["e"].clone()
        self.embeddings_ = got["e"].clone()
        self.token_ids_ = batch.tokens[0, positions[0].to(batch.tokens.device)].cpu().clone()
        self.anchor_: AnchorSpace | None = None
        self.history_: list[dict[str, float]] = []
        self.n_steps_ = 0
        self.model_ = ModelIdentity.of(model)
        self.transferred_from_: dict[str, str] | None = None
        self.data_hash_ = ""
        return self

    def _check(self) -> None:
        if not hasattr(self, "embeddings_"):
            raise NotFittedError(
                "this SoftPrompt has no embeddings yet; call fit (or initialize) first"
            )

    def _positions(self, model: TransformerBridge, batch: ChatBatch) -> torch.Tensor:
        positions = soft_positions(model, batch, self.system_text)
        if positions.shape[1] != len(self.token_ids_):
            raise SoftPromptError(
                f"the prompt has {positions.shape[1]} tokens here but the soft prompt has "
                f"{len(self.token_ids_)}; was it made with another tokenizer?"
            )
        ids = batch.tokens.gather(1, positions.to(batch.tokens.device)).cpu()
        if not bool((ids == self.token_ids_).all()):
            raise SoftPromptError(
                "the human prompt tokenises differently in this batch than when the soft prompt "
                "was made; it cannot be placed exactly"
            )
        return positions

    def batch_hooks(self, model: TransformerBridge, batch: ChatBatch) -> list[Hook]:
        """The embedding hook that puts the soft prompt into `batch` (encoded by `encode`)."""
        self._check()
        positions = self._positions(model, batch)
        return [
            (EMBED_SITE.hook_name, _inject_fn(self.embeddings_, positions, batch.tokens.shape[1]))
        ]

    # ------------------------------------------------------------------ use

    def generate(
        self,
        model: TransformerBridge,
        prompts: Sequence[str] | Any,
        *,
        max_new_tokens: int = 48,
        batch_size: int = 32,
        logits_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ) -> Completions:
        """Completions with the soft prompt in place of the human prompt (batched, KV cached).

        A `interp.generation.Decoder`: the completions are in input order, like `generate`'s;
        their `system` is the human prompt's text the soft prompt replaced.
        """
        return self.generate_with_states(
            model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
            logits_fn=logits_fn,
        )[0]  # fmt: skip

    def generate_with_states(
        self,
        model: TransformerBridge,
        prompts: Sequence[str] | Any,
        *,
        max_new_tokens: int = 48,
        batch_size: int = 32,
        logits_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ) -> tuple[Completions, torch.Tensor]:
        """Completions and f(x, theta) at the last prompt token [n, d_model], in input order."""
        self._check()
        texts = texts_of(prompts)
        return decode_with_states(
            model, texts, self.system_text, hooks_for=lambda b: self.batch_hooks(model, b),
            max_new_tokens=max_new_tokens, batch_size=batch_size, logits_fn=logits_fn,
        )  # fmt: skip

    @torch.no_grad()
    def logits(self, model: TransformerBridge, prompts: Sequence[str] | Any) -> torch.Tensor:
        """Logits [b, pos, d_vocab] of one left-padded batch with the soft prompt in place."""
        batch = self.encode(model, texts_of(prompts))
        with model.hooks(fwd_hooks=self.batch_hooks(model, batch)):
            return model(batch.tokens, attention_mask=batch.attention_mask)

    # ------------------------------------------------------------------ training

    def _passes(
        self, model: TransformerBridge, texts: Sequence[str]
    ) -> Iterator[tuple[list[int], ChatBatch]]:
        """The forward passes over `texts`: (input indices, encoded batch), grouped by length.

        At most `batch_size` rows and `max_batch_tokens` padded tokens each (`batched`).
        """
        for idx, batch in batched(
            model, texts, self.system_text, self.batch_size, max_tokens=self.max_batch_tokens
        ):
            yield idx, batch.to(model.cfg.device)

    def _states(
        self, model: TransformerBridge, batch: ChatBatch, theta: torch.Tensor
    ) -> torch.Tensor:
        """f(x, theta) at the last prompt token of each row of one encoded batch."""
        positions = self._positions(model, batch)
        hook = _inject_fn(theta, positions, batch.tokens.shape[1])
        return _final(model, batch, [(EMBED_SITE.hook_name, hook)])

    def fit(
        self,
        model: TransformerBridge,
        harmful: Sequence[str] | Any,
        harmless: Sequence[str] | Any,
        anchor: AnchorSpace,
    ) -> SoftPrompt:
        """Optimise the soft prompt with DRO; every model parameter stays frozen.

        Args:
            model: The bridge.
            harmful: Harmful training queries (pushed toward refusal).
            harmless: Harmless training queries (pushed away from refusal).
            anchor: The fitted `AnchorSpace` (PCA and probes) of this model.

        Returns:
            self, with `embeddings_`, `history_` and `n_steps_` set.

        Raises:
            SingleKindError: One of the two kinds is empty.
            NonFiniteLossError: A step produced a NaN/inf loss; the soft prompt keeps the last
                embeddings whose loss was finite.
        """
        texts, labels = split_kinds(harmful, harmless)
        anchor._check()
        self.initialize(model)
        self.anchor_ = anchor
        self.data_hash_ = texts_hash(texts, labels)
        harmless_t = torch.tensor([1.0 - v for v in labels])
        gen = torch.Generator().manual_seed(int(self.seed))
        with frozen(model):
            base = self._base_states(model, texts)
            theta = torch.nn.Parameter(self.initial_embeddings_.clone().to(model.cfg.device))
            opt = torch.optim.AdamW([theta], lr=self.lr, weight_decay=self.weight_decay)
            n_batches = (len(texts) + self.batch_size - 1) // self.batch_size
            bar = tqdm(total=self.epochs * n_batches, desc="DRO", disable=not self.progress)
            for _ in range(self.epochs):
                order = torch.randperm(len(texts), generator=gen).tolist()
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    self._step(
                        model, theta, opt, [texts[i] for i in idx], base[idx], harmless_t[idx]
                    )
                    bar.update(1)
            bar.close()
        self.embeddings_ = theta.detach().to("cpu", torch.float32).clone()
        return self

    @torch.no_grad()
    def _base_states(self, model: TransformerBridge, texts: Sequence[str]) -> torch.Tensor:
        """f(x, s0) through the placeholder path with the initial embeddings (exactly s0's)."""
        theta0 = self.initial_embeddings_
        order: list[int] = []
        parts: list[torch.Tensor] = []
        for idx, batch in self._passes(model, texts):
            order.extend(idx)
            parts.append(self._states(model, batch, theta0).cpu())
        return torch.cat(parts)[input_order(order)]

    def _step(
        self,
        model: TransformerBridge,
        theta: torch.nn.Parameter,
        opt: torch.optim.Optimizer,
        texts: Sequence[str],
        base: torch.Tensor,
        harmless: torch.Tensor,
    ) -> None:
        """One AdamW step; a non-finite loss keeps the last good embeddings and raises.

        The batch's loss is a mean over its queries, so the passes' losses, each weighted
        by its share of the queries, sum to it; their gradients accumulate into one step.
        """
        assert self.anchor_ is not None
        weights = tuple(self.loss_weights)
        opt.zero_grad()
        terms: dict[str, float] = {}
        for idx, batch in self._passes(model, texts):
            new = self._states(model, batch, theta)
            loss = dro_loss(new, base[idx], harmless[idx], self.anchor_, weights)  # type: ignore[arg-type]
            if not loss.is_finite():
                raise NonFiniteLossError(
                    f"DRO loss became non-finite at step {self.n_steps_} ({loss.floats()}); the "
                    f"soft prompt keeps the embeddings of its last finite loss (before step "
                    f"{self.n_steps_}). Lower the learning rate (now {self.lr}) or check the "
                    "anchor"
                )
            share = len(idx) / len(texts)
            (loss.total * share).backward()
            for name, value in loss.floats().items():
                terms[name] = terms.get(name, 0.0) + share * value
        # These embeddings gave a finite loss: they are what a later failure falls back to.
        self.embeddings_ = theta.detach().to("cpu", torch.float32).clone()
        torch.nn.utils.clip_grad_norm_([theta], self.grad_clip)
        opt.step()
        self.history_.append(terms)
        self.n_steps_ += 1
        logger.debug("DRO step %d: %s", self.n_steps_, terms)

    # ------------------------------------------------------------------ artifacts

    def _payload(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        self._check()
        tensors = {
            "embeddings": self.embeddings_,
            "initial_embeddings": self.initial_embeddings_,
            "token_ids": self.token_ids_.to(torch.long),
        }
        if self.anchor_ is not None:
            tensors.update(self.anchor_.tensors())
        meta = {
            "init": self.init,
            "n_tokens": len(self.token_ids_),
            "params": self.get_params(),
            "anchor_params": None if self.anchor_ is None else self.anchor_.params(),
            "data_hash": self.data_hash_,
            "n_steps": self.n_steps_,
            "history": self.history_,
        }
        return meta, tensors

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given to `__init__` (JSON-ready)."""
        return {
            "init": self.init, "epochs": self.epochs, "batch_size": self.batch_size,
            "max_batch_tokens": self.max_batch_tokens,
            "lr": self.lr, "weight_decay": self.weight_decay, "grad_clip": self.grad_clip,
            "loss_weights": list(self.loss_weights), "seed": self.seed, "progress": self.progress,
        }  # fmt: skip

    @classmethod
    def _from_saved(cls, saved: Saved) -> SoftPrompt:
        params = dict(saved.meta["params"])
        params["loss_weights"] = tuple(params["loss_weights"])
        soft = cls(params.pop("init"), **params)
        own = cls(soft.init).initialize(saved.model)
        same = torch.equal(own.token_ids_, saved.tensors["token_ids"]) and torch.allclose(
            own.initial_embeddings_, saved.tensors["initial_embeddings"], rtol=1e-5, atol=1e-6
        )
        if not same and saved.check_weights:
            raise ArtifactMismatchError(
                f"the soft prompt was trained on {saved.meta['model_name']!r}, whose embeddings of "
                f"the {soft.init!r} prompt differ from this model's; train a soft prompt for "
                "this model"
            )
        soft.model_ = ModelIdentity.from_meta(saved.meta)
        soft.initial_embeddings_ = saved.tensors["initial_embeddings"]
        soft.embeddings_ = saved.tensors["embeddings"]
        soft.token_ids_ = saved.tensors["token_ids"]
        soft.anchor_ = (
            None
            if saved.meta["anchor_params"] is None
            else AnchorSpace.from_tensors(saved.tensors, saved.meta["anchor_params"])
        )
        soft.history_ = list(saved.meta["history"])
        soft.n_steps_ = int(saved.meta["n_steps"])
        soft.data_hash_ = str(saved.meta["data_hash"])
        return soft
