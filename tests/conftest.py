"""Shared fixtures: tiny offline chat models, built once per test session.

Every family fixture hangs off ``tiny_family``, so a test that asks for both
``tiny_model_dir`` and ``tiny_bridge`` runs once per family (not once per pair), with the
bridge booted from that same directory.
"""

import os

# Hubs are unreachable in CI: fail fast instead of retrying network calls.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from interp.testing import FAMILIES, Family, build_tiny_chat_model  # noqa: E402

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread for every test, also after one that changed it (the CLI does).

    Tiny models on a shared 2-core machine run faster with one thread (extra threads spin
    against other processes: 21 s against 92 s for the real-model tests), and the
    organism's pinned numbers were measured with one thread.
    """
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


def boot_tiny_bridge(model_dir: Path) -> "TransformerBridge":
    """Boot a fresh, seeded, eval-mode bridge on CPU from a local model directory."""
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(0)
    bridge = TransformerBridge.boot_transformers(str(model_dir), device="cpu", dtype=torch.float32)
    bridge.eval()
    return bridge


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Family, Path]:
    """Family -> directory of its tiny chat model (default sizes, seed 0)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_tiny_chat_model(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_family(request: pytest.FixtureRequest) -> Family:
    """The model family under test; parametrises every tiny-model fixture below."""
    return request.param


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_family: Family, tiny_model_dirs: dict[Family, Path]) -> Path:
    """Directory of the tiny chat model of ``tiny_family`` (its name is the family)."""
    return tiny_model_dirs[tiny_family]


@pytest.fixture(scope="session")
def _tiny_bridge_cache() -> dict[Family, "TransformerBridge"]:
    return {}


@pytest.fixture(scope="session")
def tiny_bridge(
    tiny_family: Family,
    tiny_model_dirs: dict[Family, Path],
    _tiny_bridge_cache: dict[Family, "TransformerBridge"],
) -> "TransformerBridge":
    """A booted bridge of ``tiny_family``, shared by the whole session: do not mutate it.

    Tests that edit weights or leave hooks behind should use ``fresh_tiny_bridge``.
    """
    if tiny_family not in _tiny_bridge_cache:
        _tiny_bridge_cache[tiny_family] = boot_tiny_bridge(tiny_model_dirs[tiny_family])
    return _tiny_bridge_cache[tiny_family]


@pytest.fixture
def fresh_tiny_bridge(
    tiny_family: Family, tiny_model_dirs: dict[Family, Path]
) -> "TransformerBridge":
    """A private bridge of ``tiny_family`` that the test may modify freely."""
    return boot_tiny_bridge(tiny_model_dirs[tiny_family])


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-family *base* model: no chat template, eos ``<|end_of_text|>``."""
    root = tmp_path_factory.mktemp("base_model")
    return build_tiny_chat_model("llama", root / "llama", chat_template=False)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path | None:
    """The shared data directory (``<workspace>/shared/data``), or ``None`` where absent."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def organism_selection() -> dict:
    """The organism, its candidates, refusal tokens, score table and selected direction.

    Session-scoped and shared by the CAST and direction-variant tests (one selection run,
    about 20 s on one core). The model is shared: do not mutate it.
    """
    import interp
    from interp.directions import diff_in_means
    from interp.organism import CHECKPOINT_DIR, prompts
    from interp.refusal_direction import refusal_tokens, score_candidates, select_direction

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = interp.load_model(CHECKPOINT_DIR, device="cpu")
        candidates = diff_in_means(model, prompts("train", "harmful"), prompts("train", "harmless"))
        tokens = refusal_tokens(model, prompts("train", "harmful"))
        table = score_candidates(
            model, candidates, prompts("val", "harmful"), prompts("val", "harmless"), tokens
        )
    finally:
        torch.set_num_threads(before)
    return {
        "model": model,
        "candidates": candidates,
        "tokens": tokens,
        "table": table,
        "selection": select_direction(table),
    }


@pytest.fixture(scope="session")
def lookalike_dirs(
    tiny_model_dirs: dict[Family, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Llama checkpoints shaped like ``tiny_model_dirs["llama"]`` with other weights.

    ``seed1``: the same recipe with another seed. ``lora``: a copy whose only change is a
    rank-2 delta merged into one MLP matrix (embeddings and unembedding untouched), the way
    a LoRA fine-tune differs from its base.
    """
    import shutil

    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("lookalikes")
    base = tiny_model_dirs["llama"]
    lora = root / "lora"
    shutil.copytree(base, lora)
    weights = load_file(str(lora / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    gen = torch.Generator().manual_seed(0)
    b = torch.randn(weights[name].shape[0], 2, generator=gen)
    a = torch.randn(2, weights[name].shape[1], generator=gen)
    weights[name] = weights[name] + 0.01 * b @ a
    save_file(weights, str(lora / "model.safetensors"), metadata={"format": "pt"})
    return {"seed1": build_tiny_chat_model("llama", root / "seed1", seed=1), "lora": lora}
