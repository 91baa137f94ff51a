"""A LoRA weight delta on disk and its merge into the base model: save, load, merge, build.

The delta is stored the way `peft` stores an adapter (``adapter_model.safetensors`` with
peft's key names, and ``adapter_config.json``, so ``PeftModel.from_pretrained`` reads it too),
in float16, with a ``card.json`` beside it recording the sha256 of the adapter file and of the
base model's ``model.safetensors``. `build` checks both, merges ``W += (alpha / r) B @ A``
into a float32 copy of the base and writes an ordinary Hugging Face directory into the zoo
cache (``<cache>/models/<name>``): staged in a temporary folder beside it, manifest last,
renamed into place. Merging needs only torch, safetensors and transformers; training the
delta (`interp.organism.safety_tune`) needs `peft`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp import zoo
from interp._artifact import sha256_file
from interp._atomic import atomic_write
from interp._version import __version__
from interp.errors import ArtifactMismatchError, BaseModelMismatchError, ChecksumError

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_FILE",
    "ASSET_DIR",
    "BASE_FILE",
    "CARD_FILE",
    "LORA_TARGETS",
    "LoraSpec",
    "atomic_write",
    "build",
    "check_base",
    "load_delta",
    "merge_delta",
    "merged_model",
    "read_card",
    "save_delta",
    "sha256_file",
    "write_merged",
]

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
CARD_FILE = "card.json"
#: The base model's weights file whose sha256 the card records.
BASE_FILE = "model.safetensors"
#: Where the shipped `smollm2-135m-safety` delta lives.
ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "smollm2-135m-safety"
#: The Llama-family projections the LoRA adapts (attention and MLP).
LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


@dataclass(frozen=True)
class LoraSpec:
    """Shape of the LoRA delta.

    Attributes:
        r: Rank of every update.
        alpha: LoRA alpha; the update is scaled by ``alpha / r``.
        dropout: Dropout on the adapter's input during training.
        targets: Names of the adapted linear modules (kept sorted).
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0:
            raise ValueError(f"LoraSpec needs r >= 1 and alpha > 0, got r={self.r}, {self.alpha=}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraSpec.dropout must lie in [0, 1), got {self.dropout}")
        if not self.targets:
            raise ValueError("LoraSpec.targets is empty; name at least one linear module")
        # The targets are a set (peft stores them sorted): keep one canonical order.
        object.__setattr__(self, "targets", tuple(sorted(set(self.targets))))

    @property
    def scaling(self) -> float:
        """The factor of ``B @ A`` in the merged weight."""
        return self.alpha / self.r

    def to_peft(self) -> Any:
        """The equivalent `peft.LoraConfig` (needs `peft`)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.targets),
            bias="none",
            task_type="CAUSAL_LM",
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraSpec:
        """Rebuild a spec; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LoraSpec keys {unknown}; known: {sorted(known)}")
        return cls(**{**data, **({"targets": tuple(data["targets"])} if "targets" in data else {})})


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    return getattr(obj, "value", str(obj))


def save_delta(
    peft_model: Any, spec: LoraSpec, out_dir: str | Path, *, base_name: str = ""
) -> dict[str, Any]:
    """Write a peft model's LoRA weights (float16) and adapter config into `out_dir`.

    Args:
        peft_model: A `peft.PeftModel` whose adapter was built from `spec`.
        spec: The adapter's shape.
        out_dir: The folder (created if needed); each file is written atomically.
        base_name: Recorded as the adapter config's ``base_model_name_or_path``.

    Returns:
        The card's ``delta`` entry: file, sha256, dtype, parameter count and size in bytes.
    """
    from peft import get_peft_model_state_dict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(peft_model)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in sorted(state.items())}
    fd, tmp = tempfile.mkstemp(prefix=f".{ADAPTER_FILE}.", dir=out)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "interp": __version__})
        os.chmod(tmp, 0o644)
        os.replace(tmp, out / ADAPTER_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    config = spec.to_peft().to_dict()
    config.update(base_model_name_or_path=base_name, inference_mode=True)
    atomic_write(out / ADAPTER_CONFIG, _json(config))
    return {
        "file": ADAPTER_FILE,
        "sha256": sha256_file(out / ADAPTER_FILE),
        "dtype": "float16",
        "n_params": sum(t.numel() for t in tensors.values()),
        "size_bytes": (out / ADAPTER_FILE).stat().st_size,
        "lora": spec.to_dict(),
    }


def load_delta(delta_dir: str | Path) -> tuple[dict[str, torch.Tensor], LoraSpec]:
    """Read a delta written by `save_delta` (or by peft): its tensors and its `LoraSpec`."""
    path = Path(delta_dir)
    config = json.loads((path / ADAPTER_CONFIG).read_text())
    if (
        config.get("peft_type", "LORA") != "LORA"
        or config.get("use_rslora")
        or config.get("use_dora")
    ):
        raise ArtifactMismatchError(
            f"{path / ADAPTER_CONFIG} is not a plain LoRA adapter (peft_type "
            f"{config.get('peft_type')!r}, rslora/dora set); only plain LoRA can be merged here"
        )
    spec = LoraSpec(
        r=int(config["r"]),
        alpha=config["lora_alpha"],
        dropout=float(config.get("lora_dropout", 0.0)),
        targets=tuple(sorted(config["target_modules"])),
    )
    return load_file(str(path / ADAPTER_FILE)), spec


def _pairs(delta: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in delta.items():
        match = _KEY.match(key)
        if match is None:
            raise ArtifactMismatchError(
                f"delta key {key!r} is not a LoRA weight (base_model.model.<module>.lora_A/B.weight)"
            )
        pairs.setdefault(match["module"], {})[match["part"]] = tensor
    for module, parts in pairs.items():
        if set(parts) != {"A", "B"}:
            raise ArtifactMismatchError(f"delta of {module!r} lacks lora_A or lora_B")
    return pairs


def merge_delta(
    state_dict: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor], scaling: float
) -> dict[str, torch.Tensor]:
    """A new state dict with ``W + scaling * B @ A`` for every adapted module.

    The input state dict is not modified; untouched weights are shared with it. The update is
    computed in float32 and cast to each weight's dtype.

    Raises:
        ArtifactMismatchError: A delta names a module the model lacks, or its shape differs.
    """
    out = dict(state_dict)
    for module, parts in _pairs(delta).items():
        key = f"{module}.weight"
        if key not in out:
            raise ArtifactMismatchError(f"the delta adapts {module!r}, which this model lacks")
        update = (parts["B"].float() @ parts["A"].float()) * scaling
        if update.shape != out[key].shape:
            raise ArtifactMismatchError(
                f"delta of {module!r} has shape {tuple(update.shape)}, the model's weight "
                f"{tuple(out[key].shape)}: it was trained on another architecture"
            )
        out[key] = out[key] + update.to(out[key].dtype)
    return out


def merged_model(base_dir: str | Path, delta_dir: str | Path) -> Any:
    """The base model (float32, eval mode) with the delta merged into its weights."""
    from transformers import AutoModelForCausalLM

    delta, spec = load_delta(delta_dir)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model.load_state_dict(merge_delta(model.state_dict(), delta, spec.scaling))
    return model.eval()


def write_merged(base_dir: str | Path, delta_dir: str | Path, out_dir: str | Path) -> None:
    """Write the merged model (float32 safetensors) and the base's tokenizer into `out_dir`."""
    from transformers import AutoTokenizer

    model = merged_model(base_dir, delta_dir)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(out_dir))


def read_card(delta_dir: str | Path) -> dict[str, Any]:
    """The delta's card (``card.json``)."""
    return dict(json.loads((Path(delta_dir) / CARD_FILE).read_text()))


def check_base(base_dir: str | Path, card: Mapping[str, Any]) -> None:
    """Check that `base_dir` holds the base model the card's delta was trained on.

    Raises:
        BaseModelMismatchError: Its ``model.safetensors`` has another sha256, or is missing.
    """
    base = card["base"]
    weights = Path(base_dir) / BASE_FILE
    actual = sha256_file(weights) if weights.is_file() else "missing"
    if actual != base["sha256"]:
        raise BaseModelMismatchError(
            f"the delta {card.get('name', '')!r} was trained on {base.get('zoo_name')!r} whose "
            f"{BASE_FILE} has sha256 {base['sha256']}, but {weights} has {actual}. Merging it "
            f"into another base gives a meaningless model; fetch the right one with "
            f"`interp fetch {base.get('zoo_name')}`"
        )


def _check_delta(delta_dir: Path, card: Mapping[str, Any]) -> None:
    actual = sha256_file(delta_dir / ADAPTER_FILE)
    if actual != card["delta"]["sha256"]:
        raise ChecksumError(
            f"{delta_dir / ADAPTER_FILE} has sha256 {actual}, but its card records "
            f"{card['delta']['sha256']}: the adapter and card.json do not belong together"
        )


def _manifest(card: Mapping[str, Any], delta_dir: Path) -> dict[str, Any]:
    import transformers

    return {
        "recipe": card["name"],
        "sha256": card["delta"]["sha256"],
        "source": {
            "base": card["base"]["zoo_name"],
            "base_sha256": card["base"]["sha256"],
            "delta": str(delta_dir),
            "version": str(card["version"]),
        },
        "dtype": "float32",
        "interp": __version__,
        "transformers": transformers.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _is_built(path: Path, card: Mapping[str, Any]) -> bool:
    try:
        meta = json.loads((path / zoo.MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("recipe") == card["name"]
        and meta.get("sha256") == card["delta"]["sha256"]
        and (meta.get("source") or {}).get("base_sha256") == card["base"]["sha256"]
        and (path / "config.json").is_file()
    )


def build(
    delta_dir: str | Path = ASSET_DIR,
    *,
    base_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Merge a shipped delta into its zoo base and install the result in the zoo cache.

    A build already in the cache (its manifest names this delta's sha256 and base) is returned
    at once unless `force`. Otherwise the adapter's and the base's sha256 are checked against
    the card, the merged model is written into a temporary folder beside the final one, the
    manifest goes in last, and the folder is renamed into place.

    Args:
        delta_dir: The delta (adapter files + ``card.json``); the shipped one by default.
        base_dir: The base model's HF directory; by default the card's zoo base, fetched if
            needed (`interp.zoo.fetch`).
        cache_dir: The zoo cache root (see `interp.zoo.cache_root`).
        force: Rebuild even when a build exists (it is replaced only on success).

    Returns:
        ``<cache>/models/<card name>``, loadable with `interp.load_model`.

    Raises:
        ChecksumError: The adapter file does not match its card.
        BaseModelMismatchError: The base's weights are not those the delta was trained on.
    """
    delta_dir = Path(delta_dir)
    card = read_card(delta_dir)
    final = zoo.cache_root(cache_dir) / "models" / card["name"]
    if not force and _is_built(final, card):
        logger.info("%s is already built: %s", card["name"], final)
        return final
    _check_delta(delta_dir, card)
    base = (
        Path(base_dir)
        if base_dir is not None
        else zoo.fetch(card["base"]["zoo_name"], cache_dir=cache_dir)
    )
    check_base(base, card)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{card['name']}.tmp-", dir=final.parent) as tmp:
        staged = Path(tmp) / "model"
        write_merged(base, delta_dir, staged)
        # The manifest goes last: only a directory that holds it is ever trusted.
        atomic_write(staged / zoo.MANIFEST, _json(_manifest(card, delta_dir)))
        zoo.install_dir(staged, final, Path(tmp))
    logger.info("built %s from %s into %s", card["name"], base, final)
    return final
