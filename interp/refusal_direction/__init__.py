"""The refusal direction (Arditi et al., 2024): select, evaluate, explore, plot.

Candidates come from `interp.directions.diff_in_means` (every layer x post-instruction
position); here they are scored and one is selected:

- `refusal_tokens` / `refusal_score` / `score_candidates`: bypass (ablation on harmful),
  induce (ActAdd on harmless) and KL (ablation on harmless) of every candidate;
- `select_direction`: the reference's filters and ranking (`SelectionConfig`);
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
    refusal_tokens,
    score_candidates,
    select_direction,
)

__all__ = [
    "CONDITIONS",
    "MODES",
    "CosmicSelection",
    "CosmicTable",
    "DirectionEvaluation",
    "ExplorerResult",
    "ScoreTable",
    "Selection",
    "SelectionConfig",
    "cosmic_pair_scores",
    "cosmic_scores",
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
]
