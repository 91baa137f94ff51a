"""Linear probes per layer: fit, score and transfer, on the activations of `interp.activations`.

`LinearProbe` is one standardised logistic regression (scikit-learn, or the batched torch
solvers for many layers at once); `fit_probes_per_layer` fits one per layer and returns a
`ProbeSweep` (accuracy and AUROC per layer on a held-out split); `transfer_probes` scores a
sweep on other activations (e.g. the same queries under a safety prompt); `fit_probes_store` is
the sweep on an `ActivationStore` larger than memory, one layer at a time. `as_tensor` and
`check_inputs` are the input validation every estimator on activations shares.
"""

from interp.probes.from_store import fit_probes_store
from interp.probes.linear import (
    LayerMismatchError,
    LengthMismatchError,
    LinearProbe,
    NonBinaryLabelsError,
    NonFiniteActivationsError,
    ProbeInputError,
    ProbeSweep,
    SingleClassError,
    as_tensor,
    check_inputs,
    fit_probes_per_layer,
    transfer_probes,
)

__all__ = [
    "LayerMismatchError",
    "LengthMismatchError",
    "LinearProbe",
    "NonBinaryLabelsError",
    "NonFiniteActivationsError",
    "ProbeInputError",
    "ProbeSweep",
    "SingleClassError",
    "as_tensor",
    "check_inputs",
    "fit_probes_per_layer",
    "fit_probes_store",
    "transfer_probes",
]
