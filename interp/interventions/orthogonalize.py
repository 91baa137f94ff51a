"""Weight orthogonalisation: a new model whose weights cannot write the direction at all.

Every matrix that writes into the residual stream (the token embedding, each attention
output projection and each MLP down projection, plus their biases) gets the direction
projected out: W <- W - r r^T W (Arditi et al. 2024). On families whose sublayers write
straight into the residual stream (Llama, Qwen2, Mistral) the result equals hook ablation
(`DirectionalAblation`) up to float rounding. Families with sublayer *post-norms* (Gemma 2)
re-scale each sublayer output per coordinate after the projection, which re-creates a
component along r; there the two are not equivalent and a warning is logged.

Tied input/output embeddings are untied in the result, so that the unembedding stays as it was
(hook ablation never touches it) and the exported directory declares untied weights.

Memory follows what is kept. By default the result is a new bridge that owns new copies of
only the matrices it edits and *shares* every other tensor (attention q/k/v, MLP gate/up,
norms, the unembedding) with the input: the peak is the model plus the edited matrices
(about 1.35x for Llama-3-8B's shapes), never a second model. `inplace=True` edits the given
bridge's weights instead (peak about 1.0x the model, plus one embedding-sized copy when the
embeddings were tied), for a model that does not fit twice. The edit runs in row blocks, so
no full-matrix temporary is ever allocated; half-precision weights are edited in float32 and
rounded once.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM

from interp.directions import Direction
from interp.interventions.ablation import as_unit
from interp.model import refresh_fingerprint

__all__ = ["POST_NORM_FAMILIES", "orthogonalize", "save_hf"]

logger = logging.getLogger(__name__)

POST_NORM_FAMILIES: frozenset[str] = frozenset({"gemma2", "gemma3", "olmo2"})


_BLOCK_ROWS = 4096  # rows per step of the in-place update: bounds the temporaries


def _family(model: TransformerBridge) -> str:
    return str(getattr(model.original_model.config, "model_type", ""))


def _hf_module(module: Any) -> Any:
    """The HF module a bridge component wraps (the module itself when it is not wrapped)."""
    return getattr(module, "original_component", module)


def _untie_embeddings(hf: Any) -> None:
    """Give the input embedding its own weight when the output head shares it.

    The embedding (which gets edited) is the one that moves to a new tensor: the head keeps
    the original, so a copy made earlier that shares it is never changed behind its back.
    """
    head = hf.get_output_embeddings()
    embed = _hf_module(hf.get_input_embeddings())
    if head is not None and _hf_module(head).weight is embed.weight:
        weight = embed.weight
        embed.weight = torch.nn.Parameter(
            weight.detach().clone(), requires_grad=weight.requires_grad
        )
    hf.config.tie_word_embeddings = False
    text_config = getattr(hf.config, "get_text_config", None)
    if callable(text_config):
        text_config().tie_word_embeddings = False


def _row_blocks(n_rows: int) -> Iterator[slice]:
    for start in range(0, n_rows, _BLOCK_ROWS):
        yield slice(start, min(start + _BLOCK_ROWS, n_rows))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


@torch.no_grad()
def _remove_rank_one(weight: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> None:
    """Subtract outer(left, right) from `weight` in place, one block of rows at a time.

    Each element gets exactly `w - left_i * right_j` in the compute dtype (float32 for half
    types, rounded back once), the same arithmetic as the full-matrix expression.
    """
    compute = _compute_dtype(weight.dtype)
    for rows in _row_blocks(weight.shape[0]):
        block = weight[rows].to(compute)
        block -= torch.outer(left[rows], right)
        weight[rows] = block.to(weight.dtype)


def _rows_dot(weight: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The product `weight @ r` [n_rows] in the compute dtype, never copying all of `weight`."""
    compute = _compute_dtype(weight.dtype)
    if weight.dtype == compute:
        return weight @ r
    return torch.cat([weight[rows].to(compute) @ r for rows in _row_blocks(weight.shape[0])])


def _dot_rows(r: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The product `r @ weight` [n_cols] in the compute dtype, summed over row blocks."""
    compute = _compute_dtype(weight.dtype)
    if weight.dtype == compute:
        return r @ weight
    total = torch.zeros(weight.shape[1], dtype=compute, device=weight.device)
    for rows in _row_blocks(weight.shape[0]):
        total += r[rows] @ weight[rows].to(compute)
    return total


def _unit_for(weight: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    return unit.to(weight.device, _compute_dtype(weight.dtype))


@torch.no_grad()
def _project_reader_side(weight: torch.Tensor, unit: torch.Tensor) -> None:
    """W <- W - (W r) r^T for a [n, d_model] table (token or position embeddings)."""
    r = _unit_for(weight, unit)
    _remove_rank_one(weight, _rows_dot(weight, r), r)


@torch.no_grad()
def _project_writer(linear: Any, unit: torch.Tensor) -> None:
    weight = linear.weight  # [d_model, d_in]: rows write into the residual stream
    r = _unit_for(weight, unit)
    _remove_rank_one(weight, r, _dot_rows(r, weight))
    bias = getattr(linear, "bias", None)
    if bias is not None:
        rb = _unit_for(bias, unit)
        coef = (bias.to(rb.dtype) @ rb) * rb
        bias.copy_((bias.to(rb.dtype) - coef).to(bias.dtype))


def _edited_modules(model: TransformerBridge) -> list[Any]:
    """The HF modules whose weights (and biases) orthogonalisation replaces."""
    hf: Any = model.original_model
    modules = [hf.get_input_embeddings()]
    pos_embed = getattr(hf.base_model, "wpe", None)
    if pos_embed is not None:
        modules.append(pos_embed)
    for block in model.blocks:
        modules += [block.attn.o, block.mlp.out]
    return [_hf_module(module) for module in modules]


def _copy_sharing_unedited(model: TransformerBridge) -> TransformerBridge:
    """A deep copy of the bridge that shares every parameter and buffer it will not edit.

    `copy.deepcopy` with a memo that maps each kept tensor to itself copies the module tree
    (and the config, which untying edits) but no kept weights; the edited modules then get
    fresh parameters, cloned one at a time.
    """
    memo: dict[int, Any] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        memo[id(tensor)] = tensor
    new = copy.deepcopy(model, memo)
    for module in _edited_modules(new):
        for name, param in list(module.named_parameters(recurse=False)):
            fresh = torch.nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
            module.register_parameter(name, fresh)
    # The embedding is already a new tensor: untying only updates the config.
    _untie_embeddings(new.original_model)
    return new


@torch.no_grad()
def orthogonalize(
    model: TransformerBridge, direction: Direction | torch.Tensor, *, inplace: bool = False
) -> TransformerBridge:
    """A model with `direction` projected out of every residual-writing weight.

    Args:
        model: The bridge; not modified unless `inplace` is True.
        direction: A `Direction` (checked against the model) or a raw [d_model] vector.
        inplace: Edit `model`'s own weights and return it (its cached fingerprint is
            refreshed, so `interp.model_fingerprint` describes the edited weights). For a
            model that does not fit in memory twice; the caller's model is changed for good.

    Returns:
        By default a new bridge that owns new embedding, attention-out and MLP-out weights
        and shares every other tensor with `model` (do not edit those in place on either);
        with `inplace=True`, `model` itself.
    """
    unit = as_unit(direction, model).to(torch.float64)
    family = _family(model)
    if family in POST_NORM_FAMILIES:
        logger.warning(
            "%s has sublayer post-norms: weight orthogonalisation is not equivalent to hook "
            "ablation there (the post-norm re-creates a component along the direction)",
            family,
        )
    if inplace:
        new = model
        _untie_embeddings(model.original_model)
    else:
        new = _copy_sharing_unedited(model)
    hf: Any = new.original_model
    _project_reader_side(hf.get_input_embeddings().weight, unit)  # [d_vocab, d_model]
    pos_embed = getattr(hf.base_model, "wpe", None)
    if pos_embed is not None:
        _project_reader_side(pos_embed.weight, unit)
    for block in new.blocks:
        _project_writer(block.attn.o, unit)
        _project_writer(block.mlp.out, unit)
    if inplace:
        refresh_fingerprint(new)
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
