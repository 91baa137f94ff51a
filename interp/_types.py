"""Shared jaxtyping aliases: one vocabulary of dimension names for every tensor in the API.

Annotations say ``Float[torch.Tensor, "batch pos d_model"]`` (or one of the aliases below)
with these names, so a shape reads the same wherever it crosses the public API:

=============== ==========================================================================
``batch``       rows of one encoded batch (prompts of one forward pass)
``prompts``     every prompt of a prompt set (many batches stacked)
``pos``         token positions of a padded sequence
``layer``       blocks of the model (``n_layers`` rows, or the collected subset)
``n_positions`` position columns (``last``, ``eoi-3`` ... ``eoi-1``, ``mean_user``)
``n_eoi``       the chat template's post-instruction (eoi) tokens
``d_model``     the residual stream
``d_vocab``     the unembedding's vocabulary
``n_heads``     attention heads of one block
``d_head``      one head's output (per-head ``z``)
``new``         generated tokens
=============== ==========================================================================

The checks run only under pytest (``--jaxtyping-packages=interp,beartype.beartype`` or
``tests/test_shapes.py``); in the library they are annotations and cost nothing. Names bind
per call: two arguments both marked ``d_model`` must agree.
"""

import torch
from jaxtyping import Bool, Float, Int, Shaped

__all__ = [
    "BatchMask",
    "BatchTokens",
    "Bool",
    "DirectionVector",
    "Float",
    "Int",
    "LayerPositionScores",
    "LogProbs",
    "Logits",
    "Residual",
    "Shaped",
]

#: Token ids of a left-padded batch.
BatchTokens = Int[torch.Tensor, "batch pos"]
#: A boolean or 0/1 mask over a batch's tokens.
BatchMask = Shaped[torch.Tensor, "batch pos"]
#: The residual stream of a batch at one site.
Residual = Float[torch.Tensor, "batch pos d_model"]
#: One direction in the residual stream.
DirectionVector = Float[torch.Tensor, " d_model"]
#: Next-token logits, one row per prompt.
Logits = Float[torch.Tensor, "batch d_vocab"]
#: Next-token log-probabilities, one row per prompt.
LogProbs = Float[torch.Tensor, "batch d_vocab"]
#: A score per candidate on the (layer, position) grid.
LayerPositionScores = Float[torch.Tensor, "layer n_positions"]
