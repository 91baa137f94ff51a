"""SafeSwitch (Han et al., 2025): a prober gates a fine-tuned refusal head.

Fit -> apply -> evaluate -> plot:

- `prober_features` / `SafeSwitchProber`: the two-stage prober (is the request harmful? will
  the model comply?) on the model's final states, labels from its own greedy answers;
- `refusal_pairs` / `RefusalHead`: a copy of the unembedding fine-tuned on the model's own
  refusals of harmful requests;
- `SafeSwitch`: answers with the head only where the prober fires; `fit_safeswitch` is the
  whole recipe (`fit_prober` its first half); `SafeSwitch.calibrate` sets the stage-1
  threshold for a false-positive rate;
- `evaluate_safeswitch`: compliance per kind for the base model, the warning prompt, the head
  always on and SafeSwitch; `compliance_figure`, `gate_figure`.

See docs/methods/safeswitch.md for what the paper does and where this implementation departs.
"""

from interp.safeswitch.evaluate import SAFESWITCH_METHODS, SafeSwitchEvaluation, evaluate_safeswitch
from interp.safeswitch.fit import fit_prober, fit_safeswitch
from interp.safeswitch.plots import compliance_figure, gate_figure
from interp.safeswitch.prober import ProberData, SafeSwitchProber, prober_features
from interp.safeswitch.refusal_head import HeadData, RefusalHead, head_data, unembedding
from interp.safeswitch.refusal_pairs import RefusalPairs, mentions_topic, refusal_pairs
from interp.safeswitch.switch import SafeSwitch, SwitchResult, calibrate_threshold, fires

__all__ = [
    "SAFESWITCH_METHODS",
    "HeadData",
    "ProberData",
    "RefusalHead",
    "RefusalPairs",
    "SafeSwitch",
    "SafeSwitchEvaluation",
    "SafeSwitchProber",
    "SwitchResult",
    "calibrate_threshold",
    "compliance_figure",
    "evaluate_safeswitch",
    "fires",
    "fit_prober",
    "fit_safeswitch",
    "gate_figure",
    "head_data",
    "mentions_topic",
    "prober_features",
    "refusal_pairs",
    "unembedding",
]
