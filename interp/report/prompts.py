"""What the sections take as prompts: kind -> `PromptSet` (or plain strings), converted once.

The CLI passes every section `Mapping[str, PromptSet]` (kind -> the set, with its labels and
kinds); notebooks and tests may pass `Mapping[str, Sequence[str]]`. A section converts at its
entry with `prompt_sets_of` (kind -> `PromptSet`, through `interp.data.as_prompt_set`) or
`texts_by_kind` (kind -> strings, through `interp.data.texts_of`) and nothing else: no duck
typing, no `Any`.
"""

from __future__ import annotations

from collections.abc import Mapping

from interp.data import Prompts, PromptSet, as_prompt_set, texts_of

__all__ = ["PromptSets", "prompt_sets_of", "texts_by_kind"]

#: kind -> prompts, as every `add_<section>` accepts them.
PromptSets = Mapping[str, Prompts]


def prompt_sets_of(prompt_sets: PromptSets) -> dict[str, PromptSet]:
    """Each kind's `PromptSet` (plain strings become a set of that kind, labelled by it)."""
    return {kind: as_prompt_set(prompts, kind) for kind, prompts in prompt_sets.items()}


def texts_by_kind(prompt_sets: PromptSets) -> dict[str, list[str]]:
    """Each kind's user messages, in order."""
    return {kind: texts_of(prompts) for kind, prompts in prompt_sets.items()}
