"""The jaxtyping shapes of the public API hold at runtime, and a wrong shape is caught.

The whole-suite import hook (``--jaxtyping-packages=interp,beartype.beartype``) is not on:
on the activations/chat/directions/interventions/generation/safeinfer tests it took the wall
time from about 26 s to about 41 s (+55 %; pytest's own count +16 to +34 %) on a shared
2-core machine, and beartype's generic TypeError pre-empts the library's own precise error
messages (`apply(model, "ablate")` fails before its "not a hook intervention" check).
Instead these tests wrap key functions with ``jaxtyped(typechecker=beartype)`` one by one. The package keeps ``from __future__ import
annotations``: beartype resolves the string annotations against the module's globals, which
the first test proves for every annotated function.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from beartype import beartype
from jaxtyping import TypeCheckError, jaxtyped

import interp
from interp.activations import Activations
from interp.cast.grid import cosine_to, fires
from interp.chat import ChatBatch, encode
from interp.directions import Candidates, Direction
from interp.evaluation.fidelity import mean_kl, next_token_logprobs
from interp.generation import greedy_decode
from interp.interventions.ablation import as_unit, project_out
from interp.probes.linear import ProbeSweep, layer_scores
from interp.refusal_direction.selection import ScoreTable, refusal_score
from interp.safeinfer.function_vector import function_vector, mean_head_activations
from interp.safeinfer.guided import sgds_score
from interp.sites import Site


def checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with its annotations (jaxtyping shapes included) checked on every call."""
    return jaxtyped(typechecker=beartype)(fn)


def check_fields(obj: Any) -> None:
    """Re-run `obj`'s dataclass `__init__` type-checked on its own field values.

    Wrapping the class itself would patch its `__init__` for the rest of the session.
    """
    init = checked(type(obj).__init__)
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
    init(object.__new__(type(obj)), **values)


ANNOTATED = [
    project_out,
    as_unit,
    mean_kl,
    next_token_logprobs,
    sgds_score,
    cosine_to,
    fires,
    refusal_score,
    layer_scores,
    function_vector,
    mean_head_activations,
    greedy_decode,
    Activations.get,
    Activations.stack,
    Candidates.norms,
    ChatBatch.__init__,
    Direction.__init__,
    Candidates.__init__,
    ScoreTable.__init__,
    ProbeSweep.__init__,
]


@pytest.mark.parametrize("fn", ANNOTATED, ids=lambda f: f.__qualname__)
def test_every_annotation_resolves_under_the_future_import(fn):
    """beartype resolves each string annotation (a typo'd name or alias would raise here)."""
    assert callable(checked(fn))


def test_project_out_shapes_pass_and_a_wrong_width_is_caught():
    x, unit = torch.randn(2, 5, 8), torch.nn.functional.normalize(torch.randn(8), dim=0)
    out = checked(project_out)(x, unit)
    assert out.shape == (2, 5, 8)
    assert torch.allclose(out @ unit, torch.zeros(2, 5), atol=1e-5)
    with pytest.raises(TypeCheckError):
        checked(project_out)(x, torch.randn(7))  # d_model 8 against 7


def test_names_bind_across_arguments():
    """`mean_kl`'s two [prompts, d_vocab] arguments must agree on both sizes."""
    logp = torch.log_softmax(torch.randn(3, 5, dtype=torch.float64), -1)
    assert checked(mean_kl)(logp, logp) == 0.0
    with pytest.raises(TypeCheckError):
        checked(mean_kl)(logp, logp[:2])
    with pytest.raises(TypeCheckError):
        checked(mean_kl)(logp[0], logp[0])  # one row is not [prompts, d_vocab]


def test_dtype_is_part_of_the_check():
    guided = torch.log_softmax(torch.randn(2, 6), -1)
    assert checked(sgds_score)(guided, guided, 0.5).shape == (2, 6)
    with pytest.raises(TypeCheckError):
        checked(sgds_score)(guided, torch.zeros(2, 6, dtype=torch.long), 0.5)
    assert checked(fires)(torch.tensor([0.1, 0.9]), 0.5).dtype == torch.bool
    with pytest.raises(TypeCheckError):
        checked(cosine_to)(torch.randn(4, 3), torch.randn(4))


def test_layer_scores_and_refusal_score_shapes():
    x, coef, bias = torch.randn(3, 5, 4), torch.randn(3, 4).double(), torch.randn(3).double()
    assert checked(layer_scores)(x, coef, bias).shape == (3, 5)
    with pytest.raises(TypeCheckError):
        checked(layer_scores)(x, coef, torch.randn(2).double())  # 2 intercepts for 3 layers
    assert checked(refusal_score)(torch.randn(4, 10), [1, 2]).shape == (4,)


def test_direction_and_candidates_fields():
    site = Site("resid_pre", 0)
    check_fields(Direction(torch.ones(8), site))
    candidates = Candidates(
        torch.randn(2, 3, 8), "resid_pre", (0, 1), ("a", "b", "c"), "m", "", {}, 1, 1
    )
    check_fields(candidates)
    assert checked(Candidates.norms)(candidates).shape == (2, 3)
    bad = dataclasses.replace(candidates, vectors=torch.randn(2, 8))
    with pytest.raises(TypeCheckError):
        check_fields(bad)


def test_the_real_pipeline_returns_the_annotated_shapes(tiny_bridge):
    """An encoded batch, collected activations and a logits row, on a tiny model."""
    batch = encode(tiny_bridge, ["How do I bake bread?", "Hi"])
    check_fields(batch)
    acts = interp.collect_activations(
        tiny_bridge, ["How do I bake bread?", "Hi"], ["resid_post"], progress=False
    )
    check_fields(acts)
    stack = checked(Activations.stack)(acts)
    assert stack.shape[:2] == (int(tiny_bridge.cfg.n_layers), 2)
    new = checked(greedy_decode)(tiny_bridge, batch, max_new_tokens=2)
    assert new.shape[0] == 2
    logp = checked(next_token_logprobs)(tiny_bridge, ["Hi"], None)
    assert logp.shape == (1, int(tiny_bridge.cfg.d_vocab))
    broken = dataclasses.replace(batch, last_index=batch.last_index[:, None])
    with pytest.raises(TypeCheckError):
        check_fields(broken)
