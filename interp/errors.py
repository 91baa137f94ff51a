"""Exceptions raised by `interp`; each message names the problem and the fix."""


class InterpError(Exception):
    """Base class of every error `interp` raises on purpose."""


class ModelLoadError(InterpError):
    """A model could not be loaded (missing path, unsupported architecture)."""


class NoChatTemplateError(InterpError):
    """The tokenizer has no chat template (a base model) and no opt-in was given."""


class EmptyPromptSetError(InterpError, ValueError):
    """A PromptSet with no prompts was given where prompts are needed."""


class PromptTooLongError(InterpError, ValueError):
    """A rendered prompt does not fit in the model's context."""


class SiteError(InterpError, ValueError):
    """An unknown site name or a layer out of range."""


class StoreMismatchError(InterpError):
    """An activation store was written for another model, template or prompt set."""


class CorruptStoreError(InterpError):
    """A shard of an activation store is truncated or corrupted."""


class DatasetFormatError(InterpError, ValueError):
    """A dataset file lacks a needed column or cannot be parsed."""


class NotFittedError(InterpError, RuntimeError):
    """An estimator was used before `fit`."""


class ArtifactMismatchError(InterpError):
    """A saved artifact (probe, direction, head, soft prompt) belongs to another model."""


class EmptyTrainingSetError(InterpError, ValueError):
    """A learner (refusal head, ...) was given no training examples."""


class EmptyResponseError(InterpError, ValueError):
    """Training pairs hold an empty response, which gives the refusal head nothing to learn."""


class HeadShapeError(ArtifactMismatchError, ValueError):
    """A refusal head's unembedding shape does not match the model it is applied to."""


class ParameterError(InterpError, ValueError):
    """A numeric argument (a size, a count, a coefficient, a rate) lies outside its allowed range.

    The message names the argument, the allowed range and the value given.
    """


class ThresholdError(InterpError, ValueError):
    """A decision threshold (SafeSwitch prober stages) lies outside [0, 1]."""


class UnknownSafetyPromptError(InterpError, KeyError):
    """A safety-prompt name that does not exist (a ``system=`` typo, a soft prompt's ``init``).

    A `system` string that looks like a name (one word, no spaces) must be one of
    `interp.SAFETY_PROMPTS`; see `interp.chat.resolve_system`.
    """

    def __str__(self) -> str:
        # KeyError quotes its message; show it as written.
        return str(self.args[0]) if self.args else ""


class SingleKindError(InterpError, ValueError):
    """A DRO training set holds only harmful or only harmless queries."""


class NonFiniteLossError(InterpError, FloatingPointError):
    """Training produced a NaN or infinite loss (the last good state is kept)."""


class IncompleteOrganismError(ModelLoadError, ValueError):
    """A directory that looks like the organism lacks a complete ``card.json``.

    `interp organism train` writes the card last; without it (a killed run, a damaged copy)
    the directory is refused rather than taken for another kind of model.
    """


class UnknownModelError(ModelLoadError, ValueError):
    """A name asked of the model zoo (`interp.zoo`) is not one of its recipes."""


class FetchError(InterpError):
    """A zoo model could not be downloaded or converted (pip, the wheel, de-quantising)."""


class ChecksumError(FetchError):
    """A downloaded file's sha256 differs from the one its zoo recipe records."""


class BehaviourMismatchError(InterpError):
    """A model's measured behaviour differs from the table recorded in its card."""


class BaseModelMismatchError(ArtifactMismatchError):
    """A weight delta (a LoRA adapter) was trained on another base model than the one given."""


class ControlTokenError(InterpError, ValueError):
    """User or system text holds a chat-template control token (it could forge a turn)."""


class EmptyUserSpanError(InterpError, ValueError):
    """A prompt has no user-content tokens to pool over (``positions=["mean_user"]``)."""


class TooFewExamplesError(InterpError, ValueError):
    """Something learned from the model's own behaviour has too few examples of a class.

    Refusal tokens, the refusal head's targets, the SafeSwitch prober's compliance labels,
    DRO's refusal labels and the refusal-direction scoring prompts all need at least
    `interp.min_samples.MIN_PER_CLASS` examples of each class; below that, a fitted number
    would be noise presented as a measurement.

    Attributes:
        what: What was being fitted or selected.
        counts: class -> number of examples found.
        minimum: The examples per class required.
    """

    def __init__(self, what: str, counts: dict[str, int], minimum: int, fix: str) -> None:
        self.what = what
        self.counts = dict(counts)
        self.minimum = minimum
        found = ", ".join(f"{n} {name}" for name, n in self.counts.items())
        super().__init__(
            f"too few examples for {what}: {found}; at least {minimum} of each class are "
            f"needed (interp.MIN_PER_CLASS). {fix}"
        )


class JudgeLoadError(ModelLoadError, ValueError):
    """A model judge cannot be built.

    The directory is missing or is not a classifier / causal LM, the format is unknown, the
    classifier lacks the refusal labels, or the verdict words are not single tokens.
    """


class JudgeInputError(InterpError, ValueError):
    """Judge inputs do not fit.

    Prompts are missing where the template needs them, or responses, prompts and labels
    differ in length.
    """


class ModelFingerprintError(ArtifactMismatchError):
    """An artifact was made on a model with other weights (`interp.model_fingerprint` differs).

    Same architecture and template, different weights: another seed, another fine-tune, or a
    LoRA merge that left the embeddings alone. Pass ``allow_other_model=True`` to the loader
    for a deliberate transfer experiment.
    """


class CorruptArtifactError(InterpError):
    """A saved artifact's JSON or tensor file fails its checksum (edited, damaged, half-saved)."""


class NonFiniteArtifactError(CorruptArtifactError):
    """A saved artifact's tensors hold NaN or inf."""


class ArtifactVersionError(ArtifactMismatchError):
    """A saved artifact is in an older on-disk format that this version no longer reads.

    The message names the format found and the one expected; fit the artifact again and save
    it with this version.
    """


class BudgetError(InterpError, ValueError):
    """A report's time budget cannot be planned (`interp report --max-minutes`).

    The budget or the calibrated rate is not positive, or there are no prompts to time.
    """
