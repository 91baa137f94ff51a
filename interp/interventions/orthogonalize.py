"""Weight orthogonalisation: a new model whose weights cannot write the direction at all.

Every matrix that writes into the residual stream (the token embedding, each attention
output projection and each MLP down projection, plus their biases) gets the direction
projected out: W <- W - r r^T W (Arditi et al. 2024). On families whose sublayers write
straight into the residual stream (Llama, Qwen2, Mistral) the result equals hook ablation
(`DirectionalAblation`) up to float rounding. Families with sublayer *post-norms* (Gemma 2)
re-scale each sublayer output per coordinate after the projection, which re-creates a
component along r; there the two are not equivalent and a warning is logged.

Tied input/output embeddings are untied in the copy, so that the unembedding stays as it was
(hook ablation never touches it) and the exported directory declares untied weights.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM

from interp.directions import Direction
from interp.interventions.ablation import as_unit

__all__ = ["POST_NORM_FAMILIES", "orthogonalize", "save_hf"]

logger = logging.getLogger(__name__)

POST_NORM_FAMILIES: frozenset[str] = frozenset({"gemma2", "gemma3", "olmo2"})


def _family(model: TransformerBridge) -> str:
    return str(getattr(model.original_model.config, "model_type", ""))


def _untie_embeddings(model: TransformerBridge) -> None:
    hf: Any = model.original_model
    head = hf.get_output_embeddings()
    if head is not None and head.weight is hf.get_input_embeddings().weight:
        head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    hf.config.tie_word_embeddings = False
    text_config = getattr(hf.config, "get_text_config", None)
    if callable(text_config):
        text_config().tie_word_embeddings = False


@torch.no_grad()
def _project_writer(linear: Any, unit: torch.Tensor) -> None:
    weight = linear.weight  # [d_model, d_in]: rows write into the residual stream
    r = unit.to(weight.device, weight.dtype)
    weight -= torch.outer(r, r @ weight)
    bias = getattr(linear, "bias", None)
    if bias is not None:
        bias -= (bias @ r) * r


@torch.no_grad()
def orthogonalize(
    model: TransformerBridge, direction: Direction | torch.Tensor
) -> TransformerBridge:
    """A copy of `model` with `direction` projected out of every residual-writing weight.

    Args:
        model: The bridge; it is not modified.
        direction: A `Direction` (checked against the model) or a raw [d_model] vector.

    Returns:
        A new bridge (deep copy) with edited embedding, attention-out and MLP-out weights.
    """
    unit = as_unit(direction, model).to(torch.float64)
    family = _family(model)
    if family in POST_NORM_FAMILIES:
        logger.warning(
            "%s has sublayer post-norms: weight orthogonalisation is not equivalent to hook "
            "ablation there (the post-norm re-creates a component along the direction)",
            family,
        )
    new = copy.deepcopy(model)
    _untie_embeddings(new)
    hf: Any = new.original_model
    embed = hf.get_input_embeddings().weight  # [d_vocab, d_model]
    r = unit.to(embed.device, embed.dtype)
    embed -= torch.outer(embed @ r, r)
    pos_embed = getattr(hf.base_model, "wpe", None)
    if pos_embed is not None:
        pos_embed.weight -= torch.outer(pos_embed.weight @ r, r)
    for block in new.blocks:
        _project_writer(block.attn.o, unit)
        _project_writer(block.mlp.out, unit)
    return new


def _clean_state_dict(model: TransformerBridge) -> dict[str, torch.Tensor]:
    return {
        key.replace("._original_component", ""): value
        for key, value in model.original_model.state_dict().items()
    }


@torch.no_grad()
def save_hf(model: TransformerBridge, out_dir: str | Path) -> Path:
    """Write `model` as a plain Hugging Face directory (config, weights, tokenizer).

    The directory loads with `transformers.AutoModelForCausalLM.from_pretrained` without
    `interp` or TransformerLens, and gives the same logits as the bridge.

    Args:
        model: A bridge, e.g. from `orthogonalize`.
        out_dir: Where to write; created if missing.

    Returns:
        The output directory.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.original_model.config)
    fresh = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    fresh = fresh.to(dtype=next(model.original_model.parameters()).dtype)
    state = _clean_state_dict(model)
    target = fresh.state_dict()
    missing = [k for k in target if k not in state]
    if missing:
        raise KeyError(f"cannot export: the bridge has no weights for {missing[:5]}")
    fresh.load_state_dict({k: state[k] for k in target})
    generation_config = getattr(model.original_model, "generation_config", None)
    if generation_config is not None:
        fresh.generation_config = generation_config
    fresh.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    return out
