"""Conditional activation steering (CAST, Lee et al. 2025), a baseline beside SafeSwitch.

- `CAST`: fit the condition (harmful-vs-harmless unit difference in means at one layer, a
  cosine threshold) by a validation-F1 grid search, then generate with the refusal
  direction's activation addition on exactly the rows whose condition fires;
- `condition_grid` / `ConditionGrid`: the grid search and its table;
- `cosine_to`, `fires`: the condition's score and decision.

The per-row gate itself is `interp.interventions.RowGated`. See docs/methods/cast.md.
"""

from interp.cast.grid import CastError, ConditionGrid, condition_grid, cosine_to, fires
from interp.cast.steering import CAST, CastResult

__all__ = [
    "CAST",
    "CastError",
    "CastResult",
    "ConditionGrid",
    "condition_grid",
    "cosine_to",
    "fires",
]
