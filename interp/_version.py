"""The one source of the package's version, and the versions of the libraries it runs on."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

__all__ = ["LIBRARIES", "__version__", "library_versions"]

__version__ = "0.1.0"

#: The distributions whose versions decide the toolkit's numbers.
LIBRARIES: tuple[str, ...] = ("torch", "transformers", "transformer-lens", "tokenizers")


def library_versions() -> dict[str, str]:
    """Versions of python, the libraries in `LIBRARIES` and interp ("missing" if absent)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    out["interp"] = __version__
    return out
