"""Safety-guided decoding (sGDS): veto the tokens an unsafe copy of the model prefers.

At every step, with l_i the log-softmax of the guided (optionally SA-steered) model and l_u
that of the unsafe model, the next token maximises (or, sampling, is drawn from the softmax
of) `score = l_i - alpha / (1 - alpha) * max(0, l_u - l_i)`, which is the paper's model
arithmetic `(l_i - alpha * max(l_u, l_i)) / (1 - alpha)` rewritten.

The unsafe model is the same weights under other hooks (refusal-direction ablation by
default). Both run in one doubled batch through the shared loop (`greedy_decode`): rows
0..B-1 are the guided model, rows B..2B-1 the unsafe one, each set of hooks acting on its
half only, one KV cache for both; `logits_fn` scores the two halves and returns the score
for both, so both halves take the same token. `strategy="two_pass"` runs the halves as two
passes with their own caches instead (`benchmarks/bench_safeinfer.py` times both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp._types import Float
from interp.chat import ChatBatch
from interp.data.promptset import Prompts, texts_of
from interp.errors import EmptyPromptSetError, InterpError
from interp.generation import (
    Completions,
    Session,
    batched,
    cut_at_eos,
    eos_token_ids,
    greedy_decode,
)
from interp.interventions.apply import Hook, Intervention, fwd_hooks
from interp.native import Step, forward_session
from interp.safeinfer.config import STRATEGIES, Strategy, check_alpha

__all__ = ["GuidedDecoding", "gumbel_noise", "rows_only", "sgds_score"]


def sgds_score(
    guided: Float[torch.Tensor, "*batch d_vocab"],
    unsafe: Float[torch.Tensor, "*batch d_vocab"],
    alpha: float,
) -> Float[torch.Tensor, "*batch d_vocab"]:
    """The sGDS score of every token from the two models' log-probabilities.

    >>> li, lu = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    >>> sgds_score(li, lu, 0.5).tolist()
    [-1.0, -3.0]
    """
    alpha = check_alpha(alpha)
    if alpha == 0.0:
        return guided
    return guided - (alpha / (1.0 - alpha)) * (unsafe - guided).clamp_min(0.0)


@dataclass
class _Rows:
    """Which global batch rows the current forward pass holds (set by the two-pass step)."""

    offset: int = 0


def rows_only(
    fn: Callable[..., Any], start: int, stop: int, rows: Any = None
) -> Callable[..., Any]:
    """A hook that applies `fn` to batch rows `start..stop-1` only (the others pass unchanged).

    `rows` (an object with an `offset`) says which global row a pass's row 0 is, for passes
    that hold part of the batch; None means every pass holds the whole batch.
    """

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor | None:
        offset = 0 if rows is None else rows.offset
        lo, hi = max(start - offset, 0), min(stop - offset, x.shape[0])
        if lo >= hi:
            return None
        if lo == 0 and hi == x.shape[0]:
            return fn(x, hook=hook)
        part = fn(x[lo:hi], hook=hook)
        if part is None:
            return None
        out = x.clone()
        out[lo:hi] = part
        return out

    return hook


def gumbel_noise(seed: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """`fn(scores, step) -> scores + Gumbel noise`, seeded: argmax then samples softmax(scores)."""
    gen = torch.Generator().manual_seed(seed)

    def add(scores: torch.Tensor, step: int) -> torch.Tensor:  # noqa: ARG001 - logits_fn shape
        u = torch.rand(scores.shape, generator=gen)
        noise = -torch.log(-torch.log(u.clamp(1e-12, 1.0 - 1e-12)))
        return scores + noise.to(scores.device, scores.dtype)

    return add


def _two_pass(rows: _Rows) -> Session:
    """A `greedy_decode` session running a doubled batch as two passes with their own caches."""

    @contextmanager
    def session(model: TransformerBridge, hooks: Sequence[Any]) -> Iterator[Step]:
        with forward_session(model, hooks) as forward:

            def step(
                ids: torch.Tensor,
                mask: torch.Tensor,
                past: Any = None,
                logits_to_keep: int = 0,
                use_cache: bool = True,
            ) -> tuple[torch.Tensor, Any]:
                half = ids.shape[0] // 2
                pasts = past if past is not None else (None, None)
                logits, caches = [], []
                try:
                    for k in range(2):
                        rows.offset = k * half
                        part = slice(k * half, (k + 1) * half)
                        out, cache = forward(
                            ids[part], mask[part], pasts[k], logits_to_keep, use_cache
                        )
                        logits.append(out)
                        caches.append(cache)
                finally:
                    rows.offset = 0
                return torch.cat(logits), tuple(caches)

            yield step

    return session


def _doubled(batch: ChatBatch) -> ChatBatch:
    """The batch stacked on itself: rows B..2B-1 repeat rows 0..B-1."""
    return ChatBatch(
        texts=batch.texts + batch.texts,
        tokens=batch.tokens.repeat(2, 1),
        attention_mask=batch.attention_mask.repeat(2, 1),
        last_index=batch.last_index.repeat(2),
        eoi_positions=batch.eoi_positions.repeat(2, 1),
        user_mask=batch.user_mask.repeat(2, 1),
    )


@dataclass(frozen=True, eq=False)
class GuidedDecoding:
    """sGDS as a decoder: the guided model's tokens, vetoed where an unsafe copy prefers others.

    Attributes:
        alpha: Weight in [0, 1); the penalty factor is alpha / (1 - alpha) (0.99: 99). 0 gives
            plain decoding of the guided model.
        steer: Interventions on the guided model only (SafeInfer's `SafetyAmplification`).
        unsafe: Interventions that make the unsafe model from the same weights (e.g.
            `DirectionalAblation(refusal_direction)`); empty means the plain model.
        sample: Draw each token from softmax(score / temperature) with a seeded Gumbel-max
            (the paper samples at T = 1) instead of taking the argmax.
        temperature: Sampling temperature.
        seed: Seed of the draws.
        strategy: `"doubled"` (one batch of 2B rows, one cache) or `"two_pass"`.
        system: System prompt (or safety-prompt name) of the chat rendering.
    """

    alpha: float = 0.99
    steer: Sequence[Intervention] = field(default_factory=tuple)
    unsafe: Sequence[Intervention] = field(default_factory=tuple)
    sample: bool = False
    temperature: float = 1.0
    seed: int = 0
    strategy: Strategy = "doubled"
    system: str | None = None

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if self.strategy not in STRATEGIES:
            raise InterpError(f"sGDS strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if not float(self.temperature) > 0:
            raise InterpError(f"sampling temperature must be > 0, got {self.temperature}")
        object.__setattr__(self, "steer", tuple(self.steer))
        object.__setattr__(self, "unsafe", tuple(self.unsafe))

    def _logits_fn(
        self, n_rows: int, noise: Callable[[torch.Tensor, int], torch.Tensor] | None
    ) -> Callable[[torch.Tensor, int], torch.Tensor]:
        def fn(last: torch.Tensor, step: int) -> torch.Tensor:
            guided = last[:n_rows].log_softmax(-1)
            unsafe = last[n_rows:].log_softmax(-1)
            score = sgds_score(guided, unsafe, self.alpha)
            if noise is not None:
                score = noise(score / float(self.temperature), step)
            return torch.cat([score, score])

        return fn

    def _hooks(self, model: TransformerBridge, n_rows: int, rows: _Rows | None) -> list[Hook]:
        steer = [(n, rows_only(f, 0, n_rows, rows)) for n, f in fwd_hooks(model, self.steer)]
        unsafe = fwd_hooks(model, self.unsafe)
        return [*steer, *((n, rows_only(f, n_rows, 2 * n_rows, rows)) for n, f in unsafe)]

    def generate(
        self,
        model: TransformerBridge,
        prompts: Prompts,
        *,
        max_new_tokens: int = 48,
        batch_size: int = 32,
    ) -> Completions:
        """Completions of `prompts` under sGDS, in input order (batches of `batch_size` prompts)."""
        texts = texts_of(prompts)
        if not texts:
            raise EmptyPromptSetError("no prompts to generate from; pass at least one prompt")
        eos = eos_token_ids(model)
        noise = gumbel_noise(self.seed) if self.sample else None
        results: dict[int, list[int]] = {}
        for chunk, batch in batched(model, texts, self.system, batch_size):
            n_rows = len(chunk)
            rows = _Rows() if self.strategy == "two_pass" else None
            new = greedy_decode(
                model,
                _doubled(batch),
                max_new_tokens=max_new_tokens,
                fwd_hooks=self._hooks(model, n_rows, rows),
                logits_fn=self._logits_fn(n_rows, noise),
                session=None if rows is None else _two_pass(rows),
            )
            for row, idx in zip(new[:n_rows].tolist(), chunk, strict=True):
                results[idx] = cut_at_eos(row, eos)
        tokens = tuple(tuple(results[i]) for i in range(len(texts)))
        decoded = tuple(model.tokenizer.decode(list(t), skip_special_tokens=True) for t in tokens)
        return Completions(prompts=tuple(texts), texts=decoded, tokens=tokens, system=self.system)
