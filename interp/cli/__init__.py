"""The `interp` command line: `interp cache`, `interp report`, `interp organism train`.

The parser and the small commands live here; the report job, `interp report`, in
`interp.cli.report`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from interp.cli.report import SECTIONS, cmd_report

REPO_ROOT = Path(__file__).resolve().parents[2]


def _organism_dir() -> Path:
    from interp.organism import CHECKPOINT_DIR

    return CHECKPOINT_DIR


def _default_data_dir() -> Path | None:
    for candidate in (Path.cwd() / ".." / "shared" / "data", REPO_ROOT.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def load_prompts(spec: str, *, column: str | None = None, data_dir: Path | None = None):  # noqa: ANN201
    """Resolve a prompt source: a file path, `organism:SPLIT[:KIND]`, or a dataset name."""
    from interp import data

    if spec.startswith("organism:"):
        from interp import organism

        parts = spec.split(":")
        return organism.prompts(parts[1], parts[2] if len(parts) > 2 else None)
    if Path(spec).exists():
        return data.load_file(spec, column=column)
    return data.load_dataset(spec, data_dir=data_dir)


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _system_arg(text: str) -> str:
    """A `--system` value: a safety-prompt name or literal text (`interp.chat.resolve_system`).

    A one-word value that is not a safety-prompt name (a typo) is refused here, before any
    model is loaded; the value is kept as given, so the store records the name.
    """
    from interp.chat import resolve_system
    from interp.errors import UnknownSafetyPromptError

    try:
        resolve_system(text)
    except UnknownSafetyPromptError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def cmd_versions(args: argparse.Namespace) -> int:  # noqa: ARG001
    """Run `interp versions`: the versions that decide the toolkit's numbers."""
    from interp import library_versions

    for name, value in library_versions().items():
        print(f"{name} {value}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """Run `interp cache`."""
    import interp

    model = interp.load_model(args.model)
    prompts = load_prompts(args.prompts, column=args.column, data_dir=args.data_dir)
    start = time.perf_counter()
    store = interp.cache_activations(
        model,
        prompts,
        args.out,
        sites=args.sites,
        positions=args.positions,
        system=args.system,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
    )
    print(
        f"cached {len(store)} prompts x {len(store.sites)} sites x {len(store.columns)} positions "
        f"into {args.out} in {time.perf_counter() - start:.1f}s"
    )
    return 0


def cmd_organism_train(args: argparse.Namespace) -> int:
    """Run `interp organism train`."""
    if args.base:
        # A real chat model: the LoRA safety fine-tune recipe (interp.organism.safety_tune).
        from interp.organism import safety_tune

        if args.data_dir is None:
            raise SystemExit("interp organism train --base needs --data-dir (the shared data)")
        argv = ["--base", args.base, "--out", str(args.out), "--seed", str(args.seed)]
        argv += ["--data-dir", str(args.data_dir), "--threads", str(args.threads or 2)]
        return safety_tune.main(argv + (["--config", str(args.config)] if args.config else []))
    from interp import organism

    argv = ["--out", str(args.out), "--seed", str(args.seed)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.config:
        argv += ["--config", str(args.config)]
    return organism.main_train(argv)


def cmd_fetch(args: argparse.Namespace) -> int:
    """Run `interp fetch`: build a zoo model in the cache (once) and print its directory."""
    from interp import zoo

    if args.name in zoo.BUILT:
        # Built here from a delta shipped in the repository (interp.organism), not fetched.
        import importlib

        module, _, function = zoo.BUILT[args.name].rpartition(".")
        build = getattr(importlib.import_module(module), function)
        print(build(cache_dir=args.dir, force=args.force))
        return 0
    print(zoo.fetch(args.name, cache_dir=args.dir, force=args.force))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `interp` command."""
    parser = argparse.ArgumentParser(prog="interp", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("report", help="measure a model and write report.html + metrics.json")
    rep.add_argument("--model", default=str(_organism_dir()), help="HF dir or hub id")
    rep.add_argument("--out", default="report", help="output directory")
    rep.add_argument(
        "--n-per-kind", type=_positive_int, default=200, help="prompts per kind (at most)"
    )
    rep.add_argument("--max-new-tokens", type=_positive_int, default=32)
    rep.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="fit the report into about this many minutes: after timing a few generations "
        "on the model, choose --n-per-kind (and if needed --max-new-tokens, down to 8) as "
        "the largest sizes whose estimate fits (the cost model of interp.report.budget); "
        "the values given act as upper bounds",
    )
    rep.add_argument(
        "--quick",
        action="store_true",
        help="a first look: at most 24 prompts per kind and 16 new tokens "
        "(interp.report.QUICK); combine with --max-minutes to shrink further",
    )
    rep.add_argument("--data-dir", type=Path, default=_default_data_dir())
    rep.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 for the organism, whose numbers the tests pin "
        "with one thread; torch's default otherwise)",
    )
    rep.add_argument(
        "--sections", nargs="+", default=list(SECTIONS), help=f"any of {', '.join(SECTIONS)}"
    )
    rep.set_defaults(func=cmd_report)

    cache = sub.add_parser("cache", help="cache activations to a safetensors store")
    cache.add_argument("--model", default=str(_organism_dir()))
    cache.add_argument(
        "--prompts", required=True, help="file, dataset name, or organism:SPLIT[:KIND]"
    )
    cache.add_argument("--column", default=None, help="text column of a CSV/JSON file")
    cache.add_argument("--data-dir", type=Path, default=_default_data_dir())
    cache.add_argument("--sites", nargs="+", default=["resid_post"])
    cache.add_argument("--positions", nargs="+", default=["last"])
    cache.add_argument(
        "--system",
        type=_system_arg,
        default=None,
        help="a safety-prompt name (default, short, mistral, helpful, warning) or literal system "
        "text with a space; a one-word value that is no name is refused",
    )
    cache.add_argument("--out", required=True)
    cache.add_argument("--batch-size", type=int, default=32)
    cache.add_argument("--shard-size", type=int, default=256)
    cache.set_defaults(func=cmd_cache)

    fetch = sub.add_parser("fetch", help="fetch a named model (interp.zoo) into the local cache")
    fetch.add_argument("name", help="zoo name, e.g. smollm2-135m-instruct")
    fetch.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="cache root (default: $INTERP_CACHE or ~/.cache/interp)",
    )
    fetch.add_argument("--force", action="store_true", help="rebuild even if already fetched")
    fetch.set_defaults(func=cmd_fetch)

    ver = sub.add_parser("versions", help="print the python and library versions in use")
    ver.set_defaults(func=cmd_versions)

    org = sub.add_parser("organism", help="the bundled model organism")
    org_sub = org.add_subparsers(dest="organism_command", required=True)
    train = org_sub.add_parser("train", help="train the organism from scratch")
    train.add_argument("--out", required=True)
    train.add_argument("--seed", type=int, default=0, help="0 reproduces the shipped checkpoint")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--config", default=None, help="JSON file of TrainConfig overrides")
    train.add_argument(
        "--base",
        default=None,
        help="safety-tune this zoo chat model (e.g. smollm2-135m-instruct) with LoRA instead",
    )
    train.add_argument("--data-dir", type=Path, default=_default_data_dir())
    train.set_defaults(func=cmd_organism_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `interp` command."""
    args = build_parser().parse_args(argv)
    if Path(str(getattr(args, "model", ""))).exists():
        # A local directory needs no hub; this keeps transformers from trying the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
