"""Evaluate a DRO soft prompt on held-out prompts against no prompt and the human prompt.

Three conditions share one protocol: `none` (no system prompt), `human` (the safety prompt the
soft prompt started from) and `dro` (the trained soft prompt in its place). For each kind of
prompt: the refusal rate of greedy responses through the shared decoding loop (DRO's substring
judge by default), the final states' position in the anchor space, and the mean movement
relative to `none` along the anchor's refusal direction (-w_r / |w_r|, PCA units).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from interp.data.promptset import HARMFUL_KINDS, texts_of
from interp.dro.anchor import AnchorSpace
from interp.dro.geometry import DroMap
from interp.dro.soft_prompt import SoftPrompt
from interp.errors import NotFittedError
from interp.evaluation import Judge, SubstringJudge
from interp.generation import decode_with_states
from interp.projection import Projection

__all__ = ["DRO_CONDITIONS", "SoftPromptEvaluation", "evaluate_soft_prompt"]

DRO_CONDITIONS: tuple[str, ...] = ("none", "human", "dro")
#: Kinds whose requests should be refused (label 1 in the figure).


@dataclass(frozen=True)
class SoftPromptEvaluation:
    """Behaviour and geometry of held-out prompts under none / human / dro.

    Attributes:
        init: Name of the human prompt the soft prompt started from.
        refusal: kind -> condition -> refusal rate.
        shift: kind -> condition ("human", "dro") -> mean movement from `none` along the
            refusal direction (positive = toward refusal).
        compliance_logit: kind -> condition -> mean logit of the anchor's refusal model
            (a compliance logit: lower = more refusal).
        kinds: Kind of each evaluated prompt.
        coords: condition -> anchor-space coordinates [n, n_components].
        refused: condition -> 0/1 per prompt.
        responses: condition -> response per prompt.
    """

    init: str
    refusal: dict[str, dict[str, float]]
    shift: dict[str, dict[str, float]]
    compliance_logit: dict[str, dict[str, float]]
    kinds: tuple[str, ...]
    coords: dict[str, torch.Tensor] = field(repr=False)
    refused: dict[str, tuple[int, ...]] = field(repr=False)
    responses: dict[str, tuple[str, ...]] = field(repr=False)

    def dro_map(self, anchor: AnchorSpace) -> DroMap:
        """The DRO figure's data: every point in the anchor PCA with the two probe boundaries.

        As in DRO's figures, a boundary is drawn from the first two weights and the bias of
        its 4-D logistic model. The human condition is labelled by the prompt's name.
        """
        names = {"none": "none", "human": self.init, "dro": "dro"}
        n = len(self.kinds)
        labels = tuple(int(k in HARMFUL_KINDS) for k in self.kinds)
        w_h, w_r = anchor.harm_coef_, anchor.refusal_coef_
        projection = Projection(
            coords=torch.cat([self.coords[c] for c in DRO_CONDITIONS]),
            labels=labels * len(DRO_CONDITIONS),
            kinds=self.kinds * len(DRO_CONDITIONS),
            conditions=tuple(names[c] for c in DRO_CONDITIONS for _ in range(n)),
            query=tuple(range(n)) * len(DRO_CONDITIONS),
            explained_variance_ratio=tuple(float(v) for v in anchor.explained_variance_ratio_),
            method="pca",
        )
        return DroMap(
            projection=projection,
            refused=tuple(r for c in DRO_CONDITIONS for r in self.refused[c]),
            harm_boundary=(float(w_h[0]), float(w_h[1]), float(anchor.harm_intercept_)),
            refusal_boundary=(float(w_r[0]), float(w_r[1]), float(anchor.refusal_intercept_)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready numbers (rates, shifts, logits), rounded to 4 decimals."""

        def rounded(table: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
            return {k: {c: round(v, 4) for c, v in row.items()} for k, row in table.items()}

        return {
            "init": self.init,
            "refusal": rounded(self.refusal),
            "shift_along_refusal": rounded(self.shift),
            "compliance_logit": rounded(self.compliance_logit),
        }


def _texts(prompts: Sequence[str] | Any) -> list[str]:
    return texts_of(prompts)


def evaluate_soft_prompt(
    model: TransformerBridge,
    soft: SoftPrompt,
    prompt_sets: Mapping[str, Sequence[str] | Any],
    *,
    anchor: AnchorSpace | None = None,
    judge: Judge | None = None,
    max_new_tokens: int = 12,
    batch_size: int = 64,
) -> SoftPromptEvaluation:
    """Greedy refusal rates and anchor-space movement for none / human / dro, per kind.

    Args:
        model: The bridge.
        soft: A trained (or initialised) soft prompt.
        prompt_sets: kind -> held-out user messages.
        anchor: The anchor space to measure movement in (default: the soft prompt's own).
        judge: Refusal judge (DRO's substring rules by default).
        max_new_tokens: Response length.
        batch_size: Prompts per forward pass.

    Returns:
        The evaluation.
    """
    space = anchor if anchor is not None else getattr(soft, "anchor_", None)
    if space is None:
        raise NotFittedError("no anchor space: pass anchor= or evaluate a trained soft prompt")
    chosen: Judge = judge if judge is not None else SubstringJudge("dro")
    kinds = [k for k in prompt_sets for _ in _texts(prompt_sets[k])]
    texts = [t for k in prompt_sets for t in _texts(prompt_sets[k])]
    responses: dict[str, list[str]] = {}
    states: dict[str, torch.Tensor] = {}
    for cond in DRO_CONDITIONS:
        if cond == "dro":
            out, states[cond] = soft.generate_with_states(
                model, texts, max_new_tokens=max_new_tokens, batch_size=batch_size
            )
        else:
            system = None if cond == "none" else soft.system_text
            out, states[cond] = decode_with_states(
                model, texts, system, max_new_tokens=max_new_tokens, batch_size=batch_size
            )
        responses[cond] = list(out.texts)
    refused = {c: tuple(int(r) for r in chosen.is_refusal(responses[c], texts)) for c in responses}
    coords = {c: space.transform(s) for c, s in states.items()}
    logit = {c: space.compliance_logit(s) for c, s in states.items()}
    toward = space.refusal_direction()
    refusal: dict[str, dict[str, float]] = {}
    shift: dict[str, dict[str, float]] = {}
    mean_logit: dict[str, dict[str, float]] = {}
    for kind in prompt_sets:
        rows = torch.tensor([i for i, k in enumerate(kinds) if k == kind], dtype=torch.long)
        if not len(rows):
            continue
        refusal[kind] = {c: sum(refused[c][i] for i in rows.tolist()) / len(rows) for c in refused}
        shift[kind] = {
            c: float(((coords[c][rows] - coords["none"][rows]) @ toward).mean())
            for c in ("human", "dro")
        }
        mean_logit[kind] = {c: float(logit[c][rows].mean()) for c in DRO_CONDITIONS}
    return SoftPromptEvaluation(
        init=soft.init,
        refusal=refusal,
        shift=shift,
        compliance_logit=mean_logit,
        kinds=tuple(kinds),
        coords=coords,
        refused=refused,
        responses={c: tuple(r) for c, r in responses.items()},
    )
