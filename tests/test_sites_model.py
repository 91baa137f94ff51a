import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge

import interp
from interp.errors import ModelLoadError, NoChatTemplateError, SiteError
from interp.sites import Site, sites

REPO = Path(__file__).resolve().parents[1]


def test_site_parse_and_labels():
    assert Site.parse("resid_post.3") == Site("resid_post", 3)
    assert Site.parse("resid_pre:0") == Site("resid_pre", 0)
    assert Site.parse("ln_final").layer is None
    assert Site("mlp_out", 2).label == "mlp_out.2"
    with pytest.raises(SiteError, match="needs a layer"):
        Site("resid_pre")
    with pytest.raises(SiteError, match="has no layer"):
        Site("ln_final", 1)
    with pytest.raises(SiteError, match="out of range"):
        sites("resid_post", [4], n_layers=4)
    assert [s.layer for s in sites("resid_post", [-1], n_layers=4)] == [3]


def test_hook_names_only_in_sites_module():
    pattern = re.compile(
        r"hook_(resid|attn_out|mlp_out|embed|in\b|out\b|attn|mlp)|\.hook_(in|out)\b|blocks\.\{"
    )
    files = list((REPO / "interp").rglob("*.py")) + list((REPO / "notebooks").glob("*.py"))
    sites_module = REPO / "interp" / "sites.py"
    assert sites_module in files and len(files) > 40  # the scan covers the whole package
    assert pattern.search(sites_module.read_text())  # the pattern finds real hook names
    offenders = [
        str(path.relative_to(REPO))
        for path in files
        if path != sites_module and pattern.search(path.read_text())
    ]
    assert offenders == []


def test_load_model_info(tiny_model_dir):
    model = interp.load_model(tiny_model_dir)
    assert isinstance(model, TransformerBridge)  # the bridge itself, as TransformerLens returns
    info = interp.model_info(model)
    assert interp.model_info(model) is info  # cached: a second call computes nothing
    assert info.name == str(tiny_model_dir)  # the name load_model was given
    assert info.n_layers == model.cfg.n_layers
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert info.template_hash and info.has_chat_template
    assert info.has_system_role == (info.family != "gemma2")
    assert info.template_adds_bos == (info.family != "qwen2")


def test_missing_path_and_base_model(base_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        interp.load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="no config.json"):
        interp.load_model(tmp_path)
    with pytest.raises(NoChatTemplateError, match="allow_base_model"):
        interp.load_model(base_model_dir)
    base = interp.load_model(base_model_dir, allow_base_model=True)
    assert not interp.model_info(base).has_chat_template


def test_unsupported_architecture(tiny_model_dirs, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dirs["llama"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["architectures"] = ["NoSuchModelForCausalLM"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="is not supported by TransformerLens"):
        interp.load_model(bad)


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import logging, os, sys, warnings; env = dict(os.environ); "
        "h = list(logging.getLogger().handlers); import interp; "
        "assert dict(os.environ) == env, 'environment changed'; "
        "assert logging.getLogger().handlers == h; assert sys.excepthook is sys.__excepthook__"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_fingerprint_samples_every_tensor_to_its_last_element():
    """A tensor past float32's exact integers (2**24) is sampled in range, last element included."""
    from interp.model import model_fingerprint

    class Model:  # the one attribute model_fingerprint reads; weakly referenceable
        def __init__(self, module: torch.nn.Module) -> None:
            self.original_model = module

    big = torch.nn.Module()
    big.weight = torch.nn.Parameter(torch.zeros(28_311_552, dtype=torch.bfloat16))
    first = model_fingerprint(Model(big))
    with torch.no_grad():
        big.weight[-1] = 1.0
    assert model_fingerprint(Model(big)) != first
