"""What makes a directory the organism: its card, written last; an incomplete one is refused.

`interp organism train` writes, in this order: a marker (`TRAINING_MARKER`) saying a run is in
progress, the HF files (config, weights, tokenizer), and last ``card.json``, atomically; then it
removes the marker. A directory is an organism when its card parses and names the organism
(``name`` containing "organism" and a ``corpus_spec``). A directory that *looks* like one (the
marker, or the organism's own tokenizer: its ``<|bos|>`` / ``<|pad|>`` / ``<|im_end|>`` special
tokens) without such a card is a run that was killed, or a damaged copy: it is refused with
`IncompleteOrganismError` instead of being loaded and reported as a different kind of model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interp.errors import IncompleteOrganismError
from interp.organism.tokenizer import BOS, EOS, PAD

__all__ = ["CARD_FILE", "TRAINING_MARKER", "organism_card"]

#: The organism's card, the last file the trainer writes.
CARD_FILE = "card.json"
#: Written first by the trainer and removed after the card: a run is (or was) in progress.
TRAINING_MARKER = "organism-training.json"


def _special(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    return value.get("content") if isinstance(value, dict) else value


def _organism_signs(root: Path) -> list[str]:
    """Why `root` looks like an organism directory (empty: it does not)."""
    signs = []
    if (root / TRAINING_MARKER).exists():
        signs.append(f"the trainer's {TRAINING_MARKER} marker")
    try:
        config = json.loads((root / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        config = None
    if isinstance(config, dict) and (
        _special(config, "bos_token"),
        _special(config, "pad_token"),
        _special(config, "eos_token"),
    ) == (BOS, PAD, EOS):
        signs.append("the organism's tokenizer")
    return signs


def organism_card(model: str | Path) -> dict[str, Any] | None:
    """The parsed card of a complete organism directory; None for anything else.

    Args:
        model: A model directory (a zoo name or hub id is not an organism: None).

    Returns:
        The card, or None when `model` is not an organism and does not look like one.

    Raises:
        IncompleteOrganismError: `model` looks like an organism directory (the trainer's
            marker or the organism's tokenizer) but has no ``card.json``, or its card does not
            parse or is not an organism's card; or any ``card.json`` there does not parse.
    """
    root = Path(model)
    if not root.is_dir():
        return None
    signs = _organism_signs(root)
    card_path = root / CARD_FILE
    retrain = (
        f"`interp organism train` did not finish (it writes {CARD_FILE} last). Train it again "
        f"(interp organism train --out {root}) or remove the directory"
    )
    if not card_path.is_file():
        if signs:
            raise IncompleteOrganismError(
                f"{root} has {' and '.join(signs)} but no {CARD_FILE}: {retrain}"
            )
        return None
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as err:
        raise IncompleteOrganismError(
            f"{card_path} does not parse ({err}), so it cannot tell what model this is. If it "
            f"is an organism, {retrain}; otherwise restore the card"
        ) from None
    named = isinstance(card, dict) and "organism" in str(card.get("name", ""))
    if named and "corpus_spec" in card:
        return dict(card)
    if named or signs:
        why = " and ".join(signs) or "a card named as an organism"
        raise IncompleteOrganismError(
            f"{root} has {why} but its {CARD_FILE} is not a complete organism card (it needs a "
            f"name containing 'organism' and a corpus_spec): {retrain}"
        )
    return None
