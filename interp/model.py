"""Load a chat model through TransformerLens' `TransformerBridge` with raw HF numerics."""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from interp import zoo
from interp.errors import ModelLoadError, NoChatTemplateError

logger = logging.getLogger(__name__)

_INFO: weakref.WeakKeyDictionary[TransformerBridge, ModelInfo] = weakref.WeakKeyDictionary()
_FINGERPRINT: weakref.WeakKeyDictionary[TransformerBridge, str] = weakref.WeakKeyDictionary()
_SAMPLES_PER_TENSOR = 64

__all__ = [
    "ModelInfo",
    "load_model",
    "model_fingerprint",
    "model_info",
    "refresh_fingerprint",
    "template_hash",
    "unembedding_fingerprint",
    "weight_fingerprint",
]


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of the toolkit needs to know about a loaded model.

    Attributes:
        name: The name or directory the model was loaded from.
        family: The HF `model_type` (e.g. `llama`, `qwen2`, `gemma2`).
        n_layers: Number of transformer blocks.
        d_model: Width of the residual stream.
        d_vocab: Size of the unembedding.
        n_ctx: Longest context the model accepts.
        n_params: Number of parameters.
        has_chat_template: Whether the tokenizer carries a chat template.
        has_system_role: Whether the template accepts a system message; when not, system
            text is folded into the user turn (see `interp.chat.render`).
        bos_token: The BOS token string, or None for families without one.
        template_adds_bos: Whether the rendered template text already starts with BOS (then
            tokenisation must not add another).
        template_hash: sha256 of the chat template text ("" without a template).
        fingerprint: `model_fingerprint` of the weights when the model was described ("" for
            an info built by hand).
    """

    name: str
    family: str
    n_layers: int
    d_model: int
    d_vocab: int
    n_ctx: int
    n_params: int
    has_chat_template: bool
    has_system_role: bool
    bos_token: str | None
    template_adds_bos: bool
    template_hash: str
    fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)


def template_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of the tokenizer's chat template text ("" when it has none)."""
    template = tokenizer.chat_template
    if not template:
        return ""
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def weight_fingerprint(weight: torch.Tensor) -> str:
    """sha256 of up to 4096 evenly spaced rows, rounded to bf16 (so dtype choice does not matter).

    The model identity that artifacts record (the refusal head, SafeInfer's function vector):
    a different model, or a different fine-tune of the same architecture, gives another value.
    """
    step = max(1, weight.shape[0] // 4096)
    rows = weight.detach()[::step].to("cpu", torch.bfloat16).to(torch.float32).contiguous()
    return hashlib.sha256(rows.numpy().tobytes()).hexdigest()


def unembedding_fingerprint(model: TransformerBridge) -> str:
    """`weight_fingerprint` of the model's live unembedding weight [d_vocab, d_model]."""
    return weight_fingerprint(dict(model.unembed.original_component.named_parameters())["weight"])


def model_fingerprint(model: TransformerBridge) -> str:
    """sha256 identifying a model's weights: names, shapes and a fixed sample of every tensor.

    Each parameter of the HF model contributes its name, its shape and up to 64 evenly spaced
    elements of its flattened values, rounded to bf16 so that loading in float32, float16 or
    bfloat16 gives the same value. Sampling every tensor (not only the embeddings) is what
    tells a fine-tune from its base when the fine-tune left the embeddings alone, as a LoRA
    merge into attention and MLP weights does (`smollm2-135m-safety` against its base): a
    rank-8 delta of 1e-4 of the weights' spread merged into the 30 `down_proj` matrices of
    SmolLM2-135M-Instruct changes it. Names are the HF ones (the bridge's wrapper segments are
    dropped). It costs one small gather per tensor: about 20 ms for SmolLM2-135M (272 tensors)
    on one CPU thread.

    The value is computed once per model object and cached (keyed weakly by the bridge). That
    is sound because interp edits weights in place only when asked (`orthogonalize(...,
    inplace=True)`, which refreshes it); other weight edits return new models. Editing a
    bridge's parameters in place yourself leaves the cached value stale; call
    `refresh_fingerprint` (or load the model again).
    """
    cached = _FINGERPRINT.get(model)
    if cached is not None:
        return cached
    digest = hashlib.sha256(b"interp.model_fingerprint/1")
    with torch.no_grad():
        for name, param in model.original_model.named_parameters():
            flat = param.detach().reshape(-1)
            n = min(_SAMPLES_PER_TENSOR, flat.numel())
            # Integer arithmetic: float linspace rounds past the end of tensors over 2**24.
            index = torch.arange(n, device=flat.device) * (flat.numel() - 1) // max(n - 1, 1)
            sample = flat[index].to("cpu", torch.bfloat16).to(torch.float32).contiguous()
            # The bridge wraps HF modules; hash the HF names, independent of the wrapping.
            hf_name = name.replace("._original_component", "").replace("_original_component.", "")
            digest.update(f"{hf_name}:{tuple(param.shape)}".encode())
            digest.update(sample.numpy().tobytes())
    value = _FINGERPRINT[model] = digest.hexdigest()
    return value


def refresh_fingerprint(bridge: TransformerBridge) -> str:
    """Recompute the cached `model_fingerprint` of a bridge whose weights were edited in place.

    For the one in-place weight edit interp offers (`orthogonalize(..., inplace=True)`) and
    for callers who edit parameters themselves; a cached `model_info` keeps its other fields
    and gets the new fingerprint.

    Returns:
        The new fingerprint.
    """
    _FINGERPRINT.pop(bridge, None)
    value = model_fingerprint(bridge)
    info = _INFO.get(bridge)
    if info is not None:
        _INFO[bridge] = replace(info, fingerprint=value)
    return value


def _has_system_role(tokenizer: PreTrainedTokenizerBase) -> bool:
    marker = "SYSTEM-ROLE-PROBE"
    messages = [{"role": "system", "content": marker}, {"role": "user", "content": "hi"}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - templates raise arbitrary errors on unsupported roles
        return False
    return marker in str(text)


def _resolve_source(name_or_dir: str | Path) -> str:
    path = Path(name_or_dir).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} exists but has no config.json; point to a Hugging Face model directory "
                "(config.json, weights, tokenizer files)"
            )
        return str(path)
    text = str(name_or_dir)
    looks_local = text.startswith(("/", ".", "~")) or text.count("/") != 1 or "\\" in text
    if looks_local:
        raise ModelLoadError(
            f"model path {text!r} does not exist; pass an existing HF model directory or a hub id "
            "such as 'Qwen/Qwen2.5-1.5B-Instruct'"
        )
    return text


def _load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ModelLoadError(
            f"cannot load the tokenizer of {source!r}: {err}. For a hub id you must be online "
            "(unset HF_HUB_OFFLINE) or have it in the local HF cache; otherwise pass a local dir"
        ) from err


def _check_architecture(source: str) -> None:
    from transformer_lens.factories.architecture_adapter_factory import (
        ArchitectureAdapterFactory,
    )
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot read the config of {source!r}: {err}") from err
    declared = list(getattr(config, "architectures", None) or [])
    ArchitectureAdapterFactory.discover_entry_points()
    supported = set(ArchitectureAdapterFactory._adapters)
    if declared and not any(arch in supported for arch in declared):
        raise ModelLoadError(
            f"architecture {declared[0]!r} of {source!r} is not supported by TransformerLens' "
            f"TransformerBridge ({len(supported)} architectures are, e.g. LlamaForCausalLM, "
            "Qwen2ForCausalLM, Gemma2ForCausalLM); use a supported model or register an adapter"
        )


def load_model(
    name_or_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    allow_base_model: bool = False,
    requires_grad: bool = False,
    device_map: str | dict[str, str | int] | None = None,
    max_memory: dict[str | int, str | int] | None = None,
    offload_folder: str | Path | None = None,
) -> TransformerBridge:
    """Load a chat model as a `TransformerBridge` with raw HF numerics.

    No weight processing (no LayerNorm folding, no centring) is applied, so activations
    equal the HF model's own hidden states. The model is returned in eval mode with
    gradients off (pass `requires_grad=True` to keep them).

    Args:
        name_or_dir: A local HF model directory (works offline), a hub id (needs network
            or the local HF cache), or a zoo name such as `"smollm2-135m-instruct"`
            (see `interp.zoo`: the fetched copy, else the hub id).
        device: Where to put the model; None picks CUDA when available, else CPU.
        dtype: Parameter dtype; float32 by default so that CPU numerics are exact.
        allow_base_model: Accept a tokenizer without a chat template (a base model). Chat
            rendering then fails, but raw-text tools work.
        requires_grad: Leave `requires_grad` on the parameters.
        device_map: Place the blocks with accelerate instead of on one `device` (exclusive
            with it): `"auto"`, `"balanced"`, `"cpu"` or a dict from HF module names
            (`"model.layers.3"`) to a device or `"cpu"`; passed to the bridge's HF loading.
            A map that offloads weights to disk is refused. Tested on CPU only (`"cpu"` and an
            all-`"cpu"` dict); see docs/CONTRACTS.md for what was not tested.
        max_memory: Per-device budgets for accelerate's dispatcher (with `device_map`).
        offload_folder: Where accelerate may stage offloaded weights (passed through).

    Returns:
        The bridge, as TransformerLens returns it; `model_info(bridge)` describes it (cached,
        with `name_or_dir` as its name).

    Raises:
        ModelLoadError: The path does not exist, the architecture is not supported, both
            `device` and `device_map` were given, or `device_map` offloaded weights to disk.
        NoChatTemplateError: The tokenizer has no chat template and `allow_base_model` is False.
    """
    source = _resolve_source(zoo.resolve(name_or_dir))
    tokenizer = _load_tokenizer(source)
    if not tokenizer.chat_template and not allow_base_model:
        raise NoChatTemplateError(
            f"{source!r} has no chat template (a base model?). interp renders prompts with the "
            "model's own template; load an instruction-tuned model, add a template to its "
            "tokenizer_config.json, or pass allow_base_model=True for raw-text use"
        )
    _check_architecture(source)
    placement: dict[str, Any] = {}
    if device_map is not None:
        if device is not None:
            raise ModelLoadError(
                f"got both device={device!r} and device_map={device_map!r}; pass one: device "
                "puts the whole model on one device, device_map places its blocks"
            )
        placement = {"device_map": device_map, "max_memory": max_memory}
        if offload_folder is not None:
            placement["offload_folder"] = str(offload_folder)
    else:
        placement = {"device": str(device or ("cuda" if torch.cuda.is_available() else "cpu"))}
    try:
        bridge = TransformerBridge.boot_transformers(source, dtype=dtype, **placement)
    except (ValueError, KeyError, NotImplementedError) as err:
        raise ModelLoadError(
            f"TransformerBridge cannot load {source!r}: {err}. The architecture may not be "
            "supported by TransformerLens 4; check `transformer_lens.model_bridge` for the "
            "supported architectures"
        ) from err
    offloaded = [n for n, p in bridge.original_model.named_parameters() if p.is_meta]
    if offloaded:
        raise ModelLoadError(
            f"device_map {device_map!r} offloaded {len(offloaded)} weights to disk (e.g. "
            f"{offloaded[0]}); interp needs every weight in memory (it fingerprints and edits "
            "weights). Map every module to a device or 'cpu', or raise max_memory"
        )
    bridge.eval()
    for param in bridge.parameters():
        param.requires_grad_(requires_grad)
    _INFO[bridge] = _describe(bridge, str(name_or_dir))
    return bridge


def model_info(bridge: TransformerBridge) -> ModelInfo:
    """Describe a loaded bridge (layers, widths, template and BOS handling); cached per bridge.

    The name is what `load_model` was given (the config's model name for a bridge booted
    elsewhere). In-place weight edits change no field (the fingerprint included: see
    `model_fingerprint`); a new tokenizer needs a new bridge.
    """
    info = _INFO.get(bridge)
    if info is None:
        info = _INFO[bridge] = _describe(bridge, None)
    return info


def _describe(bridge: TransformerBridge, name: str | None) -> ModelInfo:
    cfg = bridge.cfg
    tokenizer = bridge.tokenizer
    has_template = bool(tokenizer.chat_template)
    adds_bos = False
    if has_template and tokenizer.bos_token:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
        )
        adds_bos = str(text).startswith(tokenizer.bos_token)
    hf_config = bridge.original_model.config
    return ModelInfo(
        name=name or str(cfg.model_name),
        family=str(getattr(hf_config, "model_type", "unknown")),
        n_layers=int(cfg.n_layers),
        d_model=int(cfg.d_model),
        d_vocab=int(cfg.d_vocab),
        n_ctx=int(cfg.n_ctx),
        n_params=sum(p.numel() for p in bridge.original_model.parameters()),
        has_chat_template=has_template,
        has_system_role=has_template and _has_system_role(tokenizer),
        bos_token=tokenizer.bos_token,
        template_adds_bos=adds_bos,
        template_hash=template_hash(tokenizer),
        fingerprint=model_fingerprint(bridge),
    )
