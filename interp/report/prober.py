"""The SafeSwitch prober, fitted once per report and shared by the sections that need it.

The probes section scores the prober and the SafeSwitch section switches with it; both ask
`shared_prober`, which fits it with `interp.safeswitch.fit_prober` the first time and keeps it
in `Report.fitted["safeswitch_prober"]` under a key of its training prompts and settings.
A second call with the same key returns the same prober (or raises the same
`TooFewExamplesError`) without decoding anything again.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformer_lens.model_bridge import TransformerBridge

from interp.errors import TooFewExamplesError
from interp.min_samples import MIN_PER_CLASS
from interp.report.page import Report
from interp.report.prompts import PromptSets, texts_by_kind
from interp.safeswitch import SafeSwitchProber, fit_prober

__all__ = ["SharedProber", "shared_prober"]


@dataclass(frozen=True)
class SharedProber:
    """A prober fitted for the report, with its training counts.

    Attributes:
        prober: The fitted prober.
        counts: Its training counts (harmful / harmless queries, compliant answers, refusals).
        system: The system prompt of its features (score it with the same).
        key: The training prompts and settings it was fitted with.
    """

    prober: SafeSwitchProber
    counts: dict[str, int]
    system: str | None
    key: tuple[object, ...]


def shared_prober(
    report: Report,
    model: TransformerBridge,
    train: PromptSets,
    *,
    system: str | None = "helpful",
    n_per_kind: int | None = 64,
    batch_size: int = 64,
    seed: int = 0,
    min_per_class: int = MIN_PER_CLASS,
) -> SharedProber:
    """The report's prober on `train`: fitted on the first call, reused on the next.

    Raises:
        TooFewExamplesError: The training answers hold fewer than `min_per_class` refusals or
            compliant answers (raised again, from the record, on a later call).
    """
    texts = texts_by_kind(train)
    key = (
        tuple((kind, tuple(v)) for kind, v in texts.items()),
        system, n_per_kind, batch_size, seed, min_per_class,
    )  # fmt: skip
    found = report.fitted.get("safeswitch_prober")
    if found is not None and found[0] == key:
        if isinstance(found[1], TooFewExamplesError):
            raise found[1]
        shared: SharedProber = found[1]
        return shared
    try:
        prober, counts = fit_prober(
            model, texts, system=system, n_per_kind=n_per_kind, batch_size=batch_size,
            seed=seed, min_per_class=min_per_class,
        )  # fmt: skip
    except TooFewExamplesError as err:
        report.fitted["safeswitch_prober"] = (key, err)
        raise
    shared = SharedProber(prober, counts, system, key)
    report.fitted["safeswitch_prober"] = (key, shared)
    return shared
