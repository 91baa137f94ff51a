"""A model and the prompt splits that go with it: the organism's own, or the public ones.

Notebooks and scripts that should run unchanged on the organism and on a real model take a
model name and get the bridge plus a `prompts(split, kind)` function: the organism's
ground-truth splits for the organism, `interp.data.public_prompts` (train / val / held-out
test) for any other chat model.
"""

from collections.abc import Callable
from functools import partial
from pathlib import Path

from transformer_lens.model_bridge import TransformerBridge

from interp.data import PromptSet, public_prompts
from interp.model import load_model
from interp.organism.card import organism_card
from interp.organism.corpus import prompts as organism_prompts

__all__ = ["CHECKPOINT_DIR", "ORGANISM", "PromptsFn", "load_with_prompts"]

#: The shipped checkpoint (``assets/organism`` beside the package in a checkout).
CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "assets" / "organism"
#: The name `load_with_prompts` gives the bundled organism.
ORGANISM = "organism"
#: ``prompts(split, kind=None) -> PromptSet``, split "train", "val" or "test".
PromptsFn = Callable[..., PromptSet]


def load_with_prompts(
    model: str | Path = ORGANISM,
    *,
    data_dir: str | Path | None = None,
    max_per_kind: int | None = 64,
    device: str | None = None,
) -> tuple[TransformerBridge, PromptsFn]:
    """Load a model and the prompt splits to study it with.

    Args:
        model: ``"organism"`` (the bundled organism, `CHECKPOINT_DIR`), or anything
            `interp.load_model` takes: a zoo name, an HF directory or a hub id.
        data_dir: The public datasets' folder; needed for any model but the organism.
        max_per_kind: For a real model, at most this many prompts per kind and split
            (seeded); the organism's splits are returned whole.
        device: Where to load the model (the organism defaults to "cpu").

    Returns:
        The bridge and ``prompts(split, kind=None) -> PromptSet``.

    Raises:
        ValueError: A model other than the organism without `data_dir`.
        IncompleteOrganismError: `model` is an organism directory without a complete card.
    """
    if str(model) == ORGANISM:
        return load_model(CHECKPOINT_DIR, device=device or "cpu"), organism_prompts
    organism_card(model)  # an organism directory without its card (a killed run) is refused
    if data_dir is None:
        raise ValueError(
            f"{model!r} is not the organism, so its prompts come from the public datasets: "
            "pass data_dir (the folder holding them, e.g. ../shared/data)"
        )
    split = partial(public_prompts, data_dir=data_dir, max_per_kind=max_per_kind)
    return load_model(model, device=device), split
