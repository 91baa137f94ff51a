"""The refusal direction (Arditi et al., 2024): select, evaluate, explore, plot.

Candidates come from `interp.directions.diff_in_means` (every layer x post-instruction
position); here they are scored and one is selected:

- `refusal_tokens` (`RefusalTokens`): the first tokens covering 99 % of the model's own
  greedy refusals, with their shares;
- `sweep_candidates`: candidates at more sites (`resid_mid`, `resid_post`) and positions
  (`last`, `mean_eoi`), in one grid;
- `refusal_score` / `score_candidates`: bypass (ablation on harmful), induce (ActAdd on
  harmless) and KL (ablation on harmless) of every candidate, per prompt and on average;
- `select_direction`: the reference's filters and ranking (`SelectionConfig`), with a
  bootstrap of the validation prompts (`Stability`: intervals, pass and selected shares);
- `verify_by_generation`: the top candidates checked by greedy ablation / ActAdd and the
  judge, ranked both ways;
- `cosmic_scores` / `select_cosmic`: COSMIC's output-free alternative (Siu et al. 2025), which
  scores candidates by cosine similarity of intervened states to the other class's mean;
- `evaluate_direction`: refusal by generation under ablation, ActAdd and orthogonalised
  weights, with KL / CE on harmless prompts;
- `explore` / `explorer_widget`: the interactive ablation explorer; the score heatmaps,
  Pareto plot and rate figures.

See docs/methods/refusal_direction.md for what the paper does and where this implementation
departs. The interventions themselves (ablation, ActAdd, orthogonalisation) are in
`interp.interventions`.
"""

from interp.refusal_direction.cosmic import (
    CosmicSelection,
    CosmicTable,
    cosmic_pair_scores,
    cosmic_scores,
    low_similarity_layers,
    select_cosmic,
)
from interp.refusal_direction.evaluate import (
    CONDITIONS,
    DirectionEvaluation,
    evaluate_direction,
    max_logit_diff,
)
from interp.refusal_direction.explorer import MODES, ExplorerResult, explore, explorer_widget
from interp.refusal_direction.plots import (
    pareto_figure,
    projection_figure,
    rates_figure,
    score_heatmaps,
)
from interp.refusal_direction.selection import (
    ScoreTable,
    Selection,
    SelectionConfig,
    layer_cut,
    refusal_score,
    score_candidates,
    select_direction,
    selectable_layers,
)
from interp.refusal_direction.stability import Stability, bootstrap_stability
from interp.refusal_direction.sweep import SiteAdd, SweepCandidates, sweep_candidates
from interp.refusal_direction.tokens import RefusalTokens, count_refusal_tokens, refusal_tokens
from interp.refusal_direction.verify import CandidateCheck, GenerationCheck, verify_by_generation

__all__ = [
    "CONDITIONS",
    "MODES",
    "CandidateCheck",
    "CosmicSelection",
    "CosmicTable",
    "DirectionEvaluation",
    "ExplorerResult",
    "GenerationCheck",
    "RefusalTokens",
    "ScoreTable",
    "Selection",
    "SelectionConfig",
    "SiteAdd",
    "Stability",
    "SweepCandidates",
    "bootstrap_stability",
    "cosmic_pair_scores",
    "cosmic_scores",
    "count_refusal_tokens",
    "evaluate_direction",
    "explore",
    "explorer_widget",
    "layer_cut",
    "low_similarity_layers",
    "max_logit_diff",
    "pareto_figure",
    "projection_figure",
    "rates_figure",
    "refusal_score",
    "refusal_tokens",
    "score_candidates",
    "score_heatmaps",
    "select_cosmic",
    "select_direction",
    "selectable_layers",
    "sweep_candidates",
    "verify_by_generation",
]
