import sys
import torch, transformers
from importlib.metadata import version
from transformer_lens.model_bridge import TransformerBridge

bridge = TransformerBridge.boot_transformers(sys.argv[1], device="cpu", dtype=torch.float32)
ids = torch.tensor([[1, 5, 9, 12, 7, 3]])
with torch.no_grad():
    full = bridge(ids, return_type="logits")[:, -1]
    hf_out = bridge.original_model(ids[:, :-1], use_cache=True)  # a correct HF cache
    hf_cache = getattr(hf_out, "cache", None) or hf_out.past_key_values
    step = bridge(ids[:, -1:], past_key_values=hf_cache, return_type="logits")[:, -1]
    _, returned = bridge(ids[:, :-1], return_type="logits_and_cache")
print("transformers", transformers.__version__, "| transformer-lens", version("transformer-lens"))
print("  cache handed back by return_type='logits_and_cache':", type(returned).__name__)
print("  max |cached step - full pass| =", f"{(step - full).abs().max().item():.3g}")
