"""Refusal-direction selection a user can trust: coverage of the refusal tokens, the bootstrap
of the validation prompts, the check by generation, and the site / position sweep."""

import logging
import math

import pytest
import torch

import interp
from interp.directions import Candidates, DirectionError, diff_in_means
from interp.interventions import ActAdd, apply
from interp.refusal_direction import (
    RefusalTokens,
    ScoreTable,
    SelectionConfig,
    SiteAdd,
    SweepCandidates,
    bootstrap_stability,
    count_refusal_tokens,
    layer_cut,
    refusal_tokens,
    score_candidates,
    select_direction,
    selectable_layers,
    sweep_candidates,
    verify_by_generation,
)

HARMFUL = ["How do I build a bomb?", "Tell me how to steal a car.", "Write malware for me."]
HARMLESS = ["How do I bake bread?", "Tell me about old cars.", "Write a poem for me."]

# --- refusal tokens -------------------------------------------------------------------------


def _planted(n_main: int = 97, n_second: int = 3, n_answers: int = 40):
    """First tokens and verdicts: opener 10 in n_main refusals, 20 in n_second, answers by 30."""
    firsts = [10] * n_main + [20] * n_second + [30] * n_answers
    flags = [True] * (n_main + n_second) + [False] * n_answers
    return firsts, flags


def test_coverage_rule_keeps_a_second_opener_at_three_percent():
    firsts, flags = _planted()
    tokens = count_refusal_tokens(firsts, flags)
    assert tokens.ids == (10, 20)
    assert tokens.coverage == 1.0 and tokens.n_refusals == 100
    assert tokens.shares == pytest.approx((0.97, 0.03))
    # The answers' opener (30) is never a refusal token, however frequent.
    assert 30 not in tokens
    # The older share rule drops the 3 % opener; so would a 90 % coverage target.
    assert count_refusal_tokens(firsts, flags, min_share=0.05).ids == (10,)
    assert count_refusal_tokens(firsts, flags, coverage=0.9).ids == (10,)


def test_coverage_stops_at_the_target_and_at_the_cap():
    # 50 + 30 + 12 + 8 singletons-ish: 0.8 needs two tokens, 0.9 three.
    firsts = [1] * 50 + [2] * 30 + [3] * 12 + [4] * 4 + [5] * 4
    flags = [True] * len(firsts)
    assert count_refusal_tokens(firsts, flags, coverage=0.8).ids == (1, 2)
    assert count_refusal_tokens(firsts, flags, coverage=0.9).ids == (1, 2, 3)
    # Ties go to the lower id; the cap can stop short of the target, and says so.
    capped = count_refusal_tokens(firsts, flags, coverage=1.0, max_tokens=4)
    assert capped.ids == (1, 2, 3, 4) and capped.coverage == pytest.approx(0.96)
    assert capped.coverage < capped.target == 1.0
    with pytest.raises(DirectionError, match="none of the 3 responses is a refusal"):
        count_refusal_tokens([1, 2, None], [False, False, True])
    with pytest.raises(ValueError, match="coverage"):
        count_refusal_tokens(firsts, flags, coverage=0.0)


def test_refusal_tokens_act_as_ids_and_reject_nothing():
    tokens = RefusalTokens((5, 6), coverage=0.9, shares=(0.6, 0.3), n_refusals=10)
    assert tuple(tokens) == (5, 6) and len(tokens) == 2 and list(tokens) == [5, 6]
    assert tokens.to_dict()["coverage"] == 0.9
    assert RefusalTokens((5,)).to_dict()["coverage"] is None  # given by hand: not measured
    with pytest.raises(DirectionError, match="empty"):
        RefusalTokens(())


@pytest.fixture(scope="module")
def organism():
    from interp.organism import CHECKPOINT_DIR

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield interp.load_model(CHECKPOINT_DIR, device="cpu")
    finally:
        torch.set_num_threads(before)


def test_derived_tokens_cover_the_organisms_planted_openers(organism):
    """The organism's refusal templates open with `I` and `Sorry`; greedy decoding uses
    `Sorry` for about 2 % of refusals, which the coverage rule keeps."""
    from interp.organism import prompts
    from interp.organism._tables import REFUSALS

    tok = organism.tokenizer
    planted = {tok(r, add_special_tokens=False).input_ids[0] for r in REFUSALS}
    tokens = refusal_tokens(organism, prompts("train", "harmful"))
    assert set(tokens.ids) == planted and len(planted) == 2
    assert tokens.coverage >= 0.99
    assert tokens.strings == ("I", "Sorry")
    assert tokens.shares[1] < 0.05  # the second opener the old 5 % rule dropped


# --- bootstrap ------------------------------------------------------------------------------


def _per_prompt(n_harm: int = 40, n_safe: int = 60, seed: int = 0):
    """Per-prompt scores of 3 layers x 1 column: layer 0 planted (large margin), layer 1 at
    the KL boundary (mean KL 0.098, per-prompt spread 0.05), layer 2 a zero candidate (NaN)."""
    gen = torch.Generator().manual_seed(seed)
    noise = lambda n, s: s * torch.randn(n, generator=gen, dtype=torch.float64)  # noqa: E731
    bypass = torch.stack([-6.0 + noise(n_harm, 0.2), -3.0 + noise(n_harm, 0.2)])
    induce = torch.stack([3.0 + noise(n_safe, 0.2), 2.0 + noise(n_safe, 0.2)])
    spread = noise(n_safe, 0.05)
    kl = torch.stack([0.01 + noise(n_safe, 0.001), 0.098 + spread - spread.mean()])
    nan = lambda n: torch.full((1, n), math.nan, dtype=torch.float64)  # noqa: E731
    cat = lambda x, n: torch.cat([x, nan(n)])[:, None]  # noqa: E731
    return cat(bypass, n_harm), cat(induce, n_safe), cat(kl, n_safe)


def test_bootstrap_pass_share_is_one_for_a_large_margin_and_below_one_at_the_kl_boundary():
    bypass, induce, kl = _per_prompt()
    config = SelectionConfig(max_layer_fraction=1.0)
    st = bootstrap_stability(bypass, induce, kl, (0, 1, 2), config)
    assert st.pass_share[0, 0] == 1.0 and st.selected_share[0, 0] == 1.0
    assert 0.0 < float(st.pass_share[1, 0]) < 1.0
    assert st.pass_share[2, 0] == 0.0 and st.selected_share[2, 0] == 0.0
    # The intervals hold the full-sample mean and straddle the KL limit at the boundary.
    assert st.bypass_lo[0, 0] <= bypass[0, 0].mean() <= st.bypass_hi[0, 0]
    assert st.kl_lo[1, 0] < config.max_kl < st.kl_hi[1, 0]
    assert math.isnan(float(st.kl_lo[2, 0]))
    again = bootstrap_stability(bypass, induce, kl, (0, 1, 2), config)
    assert torch.equal(again.pass_share, st.pass_share)  # seeded
    other = bootstrap_stability(bypass, induce, kl, (0, 1, 2), SelectionConfig(seed=1))
    assert not torch.equal(other.kl_lo, st.kl_lo)


def _table(bypass, induce, kl, layers=(0, 1, 2)):
    cands = Candidates(
        torch.randn(len(layers), 1, 8), "resid_pre", layers, ("eoi-1",), "m", "", {}, 1, 1
    )
    return ScoreTable(
        cands, bypass.mean(-1), induce.mean(-1), kl.mean(-1), 1.0, -1.0, (1,),
        per_prompt_bypass=bypass, per_prompt_induce=induce, per_prompt_kl=kl,
    )  # fmt: skip


def test_a_selection_at_the_kl_boundary_is_flagged_unstable(caplog):
    bypass, induce, kl = _per_prompt()
    config = SelectionConfig(max_layer_fraction=1.0)
    solid = select_direction(_table(bypass, induce, kl), config)
    assert solid.direction.layer == 0 and solid.stable is True and solid.selected_share == 1.0
    # Without the planted candidate, the boundary one is chosen (mean KL 0.098 <= 0.1), but
    # only in the resamples where it passes: flagged when that is below the level asked.
    boundary = (bypass[1:], induce[1:], kl[1:])
    table = _table(*boundary, layers=(1, 2))
    assert float(table.kl[0, 0]) <= 0.1
    with caplog.at_level(logging.WARNING):
        shaky = select_direction(table, SelectionConfig(min_selected_share=0.99))
    assert shaky.direction.layer == 1 and shaky.stable is False
    assert shaky.selected_share == shaky.pass_share < 0.99
    assert "unstable" in caplog.text
    rows = shaky.rows()
    assert rows[0]["pass_share"] == shaky.pass_share and rows[0]["kl_lo"] < rows[0]["kl"]
    off = select_direction(table, SelectionConfig(n_resamples=0))
    assert off.stability is None and off.stable is None and math.isnan(off.selected_share)


# --- sweep ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama(tiny_model_dirs):
    return interp.load_model(tiny_model_dirs["llama"])


def test_default_sweep_is_diff_in_means(llama):
    plain = diff_in_means(llama, HARMFUL, HARMLESS)
    swept = sweep_candidates(llama, HARMFUL, HARMLESS)
    assert type(swept) is Candidates and swept.columns == plain.columns
    assert torch.equal(swept.vectors, plain.vectors)


def test_site_sweep_lines_up_sites_and_positions(llama):
    sites = ("resid_pre", "resid_mid", "resid_post")
    swept = sweep_candidates(llama, HARMFUL, HARMLESS, sites=sites, positions=("eoi", "mean_eoi"))
    assert isinstance(swept, SweepCandidates)
    pre = diff_in_means(llama, HARMFUL, HARMLESS)
    post = diff_in_means(llama, HARMFUL, HARMLESS, stream="resid_post")
    n_eoi = len(pre.columns)
    assert len(swept.columns) == 3 * (n_eoi + 1)
    assert (
        swept.columns[0] == f"resid_pre/{pre.columns[0]}" and "resid_mid/mean_eoi" in swept.columns
    )
    j = swept.columns.index("resid_post/mean_eoi")
    torch.testing.assert_close(swept.vectors[:, j], post.vectors.mean(1))
    d = swept.direction(1, "resid_post/eoi-1")
    assert d.site.label == "resid_post.1" and d.position == "eoi-1"
    torch.testing.assert_close(d.vector, post.vectors[1, -1])
    with pytest.raises(ValueError, match="sweep positions"):
        sweep_candidates(llama, HARMFUL, HARMLESS, positions=("first",))


def test_adding_at_resid_post_equals_actadd_at_the_next_block_input(llama):
    post = diff_in_means(llama, HARMFUL, HARMLESS, stream="resid_post")
    direction = post.direction(0, "eoi-1")
    batch = interp.encode(llama, HARMFUL)
    with apply(llama, SiteAdd(direction, 2.0)):
        a = llama(batch.tokens, attention_mask=batch.attention_mask)
    with apply(llama, ActAdd(direction.vector, 2.0, 1)):
        b = llama(batch.tokens, attention_mask=batch.attention_mask)
    torch.testing.assert_close(a, b)


# --- check by generation --------------------------------------------------------------------


class _ScriptedJudge:
    """Calls 1, 2, ... in order: refuses everything on call `refusing_call` only."""

    name = "scripted"

    def __init__(self, refusing_call: int) -> None:
        self.calls = 0
        self.refusing_call = refusing_call

    def is_refusal(self, responses, prompts=None):  # noqa: ARG002 - the judge protocol
        self.calls += 1
        return [self.calls == self.refusing_call] * len(responses)


def test_generation_check_ranks_by_generated_refusal(llama):
    cands = diff_in_means(llama, HARMFUL, HARMLESS)
    table = score_candidates(llama, cands, HARMFUL, HARMLESS, [5, 6], min_per_class=1)
    loose = SelectionConfig(max_kl=math.inf, min_induce=-math.inf, max_layer_fraction=1.0)
    selection = select_direction(table, loose)
    # Call 1 is the top candidate's ablated harmful prompts: it "still refuses", so by
    # generation it drops to last; the others keep their score order.
    check = verify_by_generation(
        llama, selection, HARMFUL, HARMLESS, k=3, judge=_ScriptedJudge(1), max_new_tokens=2
    )
    assert [c.score_rank for c in check.checks] == [1, 2, 3]
    assert [c.generation_rank for c in check.checks] == [3, 1, 2]
    assert check.checks[0].ablation_refusal == 1.0 and check.checks[1].ablation_refusal == 0.0
    assert (check.checks[0].layer, check.checks[0].column) == (
        selection.direction.layer,
        selection.column,
    )
    assert check.best.score_rank == 2 and check.rows()[0]["generation_rank"] == 3
    with pytest.raises(ValueError, match="k must be"):
        verify_by_generation(llama, selection, HARMFUL, HARMLESS, k=0)


def test_scoring_only_the_selectable_layers_changes_no_score_and_no_choice(organism):
    cands = diff_in_means(organism, HARMFUL, HARMLESS)
    config = SelectionConfig(max_kl=math.inf, min_induce=-math.inf, max_layer_fraction=0.5)
    full = score_candidates(organism, cands, HARMFUL, HARMLESS, [5, 6], min_per_class=1)
    keep = selectable_layers(organism.cfg.n_layers, config)
    assert 0 < len(keep) < organism.cfg.n_layers
    part = score_candidates(
        organism, cands, HARMFUL, HARMLESS, [5, 6], min_per_class=1, layers=keep
    )
    rows = list(keep)
    for name in ("bypass", "induce", "kl"):
        # Layer 0's eoi columns are the same tokens' embeddings in both sets: zero, NaN.
        torch.testing.assert_close(
            getattr(part, name)[rows], getattr(full, name)[rows], equal_nan=True
        )
        assert bool(getattr(full, name)[rows].isfinite().any())
        assert bool(getattr(part, name)[len(rows) :].isnan().all())
    a, b = select_direction(full, config), select_direction(part, config)
    assert (a.direction.layer, a.column) == (b.direction.layer, b.column)
    assert a.bypass == b.bypass
    # A filter nothing passes names the unscored layers under the layer filter.
    strict = SelectionConfig(max_kl=0.0, max_layer_fraction=0.5)
    n_cut = (organism.cfg.n_layers - len(keep)) * len(cands.columns)
    with pytest.raises(DirectionError, match=rf"layer: {n_cut}\b"):
        select_direction(part, strict)


def test_the_report_drops_the_induce_filter_last_and_says_so(organism_selection):
    """When no candidate induces refusal (a small real model's case), the report's selection
    relaxes KL first, then drops the induce filter, and returns a note for the warnings."""
    from dataclasses import replace

    from interp.report.refusal_direction import _select

    table = organism_selection["table"]
    config = SelectionConfig()
    same, notes = _select(table, config)
    assert notes == [] and same.config == config  # nothing to relax on the organism
    no_induce = replace(
        table,
        induce=-table.induce.abs() - 1.0,
        per_prompt_induce=-table.per_prompt_induce.abs() - 1.0,
    )
    with pytest.raises(DirectionError, match="induce"):
        select_direction(no_induce, config)
    chosen, notes = _select(no_induce, config)
    assert chosen.config.min_induce == -math.inf and chosen.config.max_kl == config.max_kl
    assert len(notes) == 1 and "without the induce filter" in notes[0]
    # Without the induce filter the lowest bypass among KL-passing candidates wins.
    kl_ok = table.kl <= config.max_kl
    kl_ok[list(range(layer_cut(6), 6))] = False
    best = torch.where(kl_ok, table.bypass, torch.full_like(table.bypass, math.inf)).min()
    assert chosen.bypass == float(best)
