"""The `interp` command line: `interp cache`, `interp report`, `interp organism train`."""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.data import PromptSet

REPO_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("harmful", "harmless", "borderline", "jailbreak")


def _organism_dir() -> Path:
    from interp.organism import CHECKPOINT_DIR

    return CHECKPOINT_DIR


def _default_data_dir() -> Path | None:
    for candidate in (Path.cwd() / ".." / "shared" / "data", REPO_ROOT.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _is_organism(model: str | Path) -> bool:
    """Whether `model` is a complete directory written by `interp organism train`.

    Raises:
        IncompleteOrganismError: It looks like one but has no complete card (a killed run);
            see `interp.organism.organism_card`.
    """
    from interp.organism import organism_card

    return organism_card(model) is not None


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


def report_prompt_sets(
    model: str | Path, n_per_kind: int, data_dir: Path | None, seed: int = 0
) -> dict[str, PromptSet]:
    """The measured `PromptSet` per kind: the organism's test split, or the held-out sets.

    A real model is measured on `interp.data.HELD_OUT_SETS`; each kind keeps at most
    `n_per_kind` prompts (a seeded `PromptSet.sample`). The sets reach the sections as they
    are, labels and kinds included.
    """
    if _is_organism(model):
        from interp import organism

        sets = {kind: organism.prompts("test", kind) for kind in KINDS}
    else:
        from interp import data

        if data_dir is None:
            raise SystemExit(
                "interp report on a real model needs the public datasets: pass --data-dir "
                "pointing to the shared data folder (the held-out sets of "
                "interp.data.HELD_OUT_SETS)"
            )
        sets = data.held_out_sets(data_dir, n_per_kind, seed, kinds=KINDS)
    return {
        kind: prompt_set.sample(n_per_kind, seed=seed)
        if len(prompt_set) > n_per_kind
        else prompt_set
        for kind, prompt_set in sets.items()
    }


SECTIONS = ("baseline", "probes", "refusal_direction", "safeswitch", "dro", "comparison")
#: Exit status of `interp report` when the organism does not behave as its card says.
EXIT_BEHAVIOUR_MISMATCH = 3


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


def _writable_out_dir(out: str | Path) -> Path:
    """Check, before any model is loaded, that `out` is (or can become) a writable folder.

    Raises:
        SystemExit: `out` is an existing file, or a folder that cannot be created or written.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise SystemExit(f"--out {out} is an existing file; pass a directory (new or existing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".interp-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise SystemExit(
            f"--out {out} is not writable ({err.strerror or err}); pass a directory you can "
            "write to"
        ) from None
    return path


def check_organism_card(
    report: Any, model: str | Path, sets: Mapping[str, PromptSet], args: Any
) -> str:
    """Compare the organism's measured baseline with its card; the problem, or "" if none.

    The card's table was measured on the organism's full test split with 32 new tokens; on
    a subsample or another length the comparison is skipped (and says so in metrics.json).
    """
    from interp import library_versions
    from interp.organism import CARD_TOLERANCE, card_mismatches

    card = json.loads((Path(model) / "card.json").read_text())
    check: dict[str, Any] = {"tolerance": CARD_TOLERANCE}
    report.metrics["organism_check"] = check
    sizes = {kind: len(prompts) for kind, prompts in sets.items()}
    recorded = card.get("behaviour", {}).get("n", {})
    if "baseline" not in report.metrics or sizes != recorded or args.max_new_tokens != 32:
        check["status"] = "skipped: needs the baseline on the full test split, 32 new tokens"
        return ""
    mismatches = card_mismatches(report.metrics["baseline"], card)
    check["mismatches"] = mismatches
    check["status"] = "failed" if mismatches else "passed"
    if not mismatches:
        return ""
    now = library_versions()
    then = card.get("library_versions", {"torch": card.get("torch_version", "unknown")})
    differ = [f"{k} {then[k]} (card) vs {now.get(k)} (here)" for k in then if then[k] != now.get(k)]
    cause = (
        "library versions differ from those recorded in the card: "
        + "; ".join(differ)
        + ". Install from the lock (make install / make dev) and run again"
        if differ
        else "the library versions equal the card's, so the decoding or judging code changed"
    )
    return (
        f"the organism does not behave as its card says ({len(mismatches)} of its refusal "
        f"rates differ by more than {CARD_TOLERANCE}: "
        + "; ".join(mismatches[:6])
        + f"). Likely cause: {cause}."
    )


def stage_sets(
    model: str | Path, data_dir: Path | None = None, n_per_kind: int = 64
) -> tuple[dict[str, PromptSet], dict[str, PromptSet]]:
    """Training and validation prompts for the sections that fit something.

    The organism has its own train / validation splits (combinations never seen in the test
    split). A real model gets the public train / validation splits (`interp.data.PUBLIC_SPLITS`:
    harmful, harmless and jailbreak; borderline prompts are all held out), `n_per_kind` of each,
    so that nothing is fitted on the prompts the report measures on. Without `data_dir` the
    mappings are empty and the sections split the measured sets 50/25/25 themselves.
    """
    if not _is_organism(model):
        if data_dir is None:
            return {}, {}
        from interp import data

        def public(split: str) -> dict[str, PromptSet]:
            ps = data.public_prompts(split, data_dir=data_dir, max_per_kind=n_per_kind)
            return {kind: ps.filter(kind=kind) for kind in dict.fromkeys(ps.kinds)}

        return public("train"), public("val")
    from interp import organism

    def pick(split: str) -> dict[str, PromptSet]:
        return {kind: organism.prompts(split, kind) for kind in KINDS}

    return pick("train"), pick("val")


def _public_train(data_dir: Path | None, n_per_kind: int) -> dict[str, PromptSet] | None:
    """Harmful and harmless training prompts for a real model (the public train split)."""
    if data_dir is None:
        return None
    from interp import data

    kinds = ("harmful", "harmless")
    train = data.public_prompts("train", kinds, data_dir=data_dir, max_per_kind=n_per_kind)
    return {kind: train.filter(kind=kind) for kind in kinds}


def _run_section(
    name: str,
    report: Any,
    model: Any,
    info: Any,
    sets: Mapping[str, PromptSet],
    train: Mapping[str, PromptSet],
    val: Mapping[str, PromptSet],
    args: argparse.Namespace,
) -> None:
    """Add one section; a failure that depends on the model's behaviour becomes a note.

    A section can be impossible for a given model (a model that never refuses has no refusal
    direction and nothing for a refusal head to learn; one with fewer than
    `interp.MIN_PER_CLASS` refusals gives too few to learn from). The report then says why in
    a warning box at the top of the section and in the page's warnings, under
    ``metrics[name] = {"skipped": reason}`` and ``metrics["skipped"][name]``, and the other
    sections still run. Bugs (anything that is not an `InterpError`) still raise.
    """
    from interp.errors import InterpError
    from interp.report import add_baseline, texts_by_kind

    # add_refusal_direction takes plain strings (its module converts nothing itself).
    staged = {"train": texts_by_kind(train), "val": texts_by_kind(val)} if train else {}
    try:
        if name == "baseline":
            add_baseline(report, model, sets, max_new_tokens=args.max_new_tokens)
        elif name == "probes":
            from interp.report.probes import add_probes

            add_probes(
                report, model, info, sets, train=train or None,
                max_new_tokens=min(16, args.max_new_tokens),
            )  # fmt: skip
        elif name == "refusal_direction":
            from interp.report.refusal_direction import add_refusal_direction

            add_refusal_direction(
                report, model, info, texts_by_kind(sets), max_new_tokens=args.max_new_tokens,
                **staged,
            )  # fmt: skip
        elif name == "safeswitch":
            from interp.report.safeswitch import add_safeswitch

            add_safeswitch(
                report,
                model,
                info,
                sets,
                train=train or None,
                val=val or None,
                max_new_tokens=args.max_new_tokens,
            )
        elif name == "dro":
            from interp.report.dro import add_dro

            add_dro(report, model, info, sets, train=train or None)
        elif name == "comparison":
            # After the method sections: it reuses what they fitted (report.fitted).
            from interp.report.comparison import add_comparison

            add_comparison(
                report,
                model,
                info,
                sets,
                train=train or _public_train(args.data_dir, len(next(iter(sets.values())))),
                max_new_tokens=args.max_new_tokens,
            )
    except InterpError as err:
        logging.getLogger("interp.cli").warning("section %s skipped: %s", name, err)
        report.skip(name, name, str(err))


#: Prompts per kind the calibration times (from the measured sets, no system prompt).
CALIBRATION_PER_KIND = 8
#: The seed of every sampler, split, fit and bootstrap in `interp report`.
REPORT_SEED = 0


def _plan(
    args: argparse.Namespace,
    report: Any,
    model: Any,
    sets: Mapping[str, PromptSet],
    elapsed: float,
) -> dict[str, Any]:
    """Time a few generations, estimate the report, and with --max-minutes choose the sizes.

    Returns the `metrics["run"]` entries of the plan (calibration, estimate, budget); with
    `--max-minutes` it also sets `args.n_per_kind` and `args.max_new_tokens` to the sizes
    chosen by `interp.report.choose_sizes`.
    """
    from interp.report import calibrate, choose_sizes, estimate_seconds, texts_by_kind
    from interp.report.budget import sample_for_calibration

    texts = texts_by_kind(sets)
    sample = sample_for_calibration(texts, CALIBRATION_PER_KIND, REPORT_SEED)
    with report.timed("calibration"):
        calibration = calibrate(model, sample, max_new_tokens=min(16, args.max_new_tokens))
    rate = calibration.seconds_per_unit
    available = {kind: len(v) for kind, v in texts.items()}
    plan: dict[str, Any] = {
        "calibration": calibration.to_dict(),
        "cost_model": "interp.report.budget",
    }
    if args.max_minutes is not None:
        budget = args.max_minutes * 60 - elapsed - calibration.seconds
        sizes = choose_sizes(
            max(budget, 1e-3), args.sections, available, rate,
            max_n_per_kind=args.n_per_kind, max_new_tokens=args.max_new_tokens,
        )  # fmt: skip
        args.n_per_kind, args.max_new_tokens = sizes.n_per_kind, sizes.max_new_tokens
        plan["budget"] = {"max_minutes": args.max_minutes, "sections_s": round(budget, 1),
                          **sizes.to_dict()}  # fmt: skip
        if not sizes.fits:
            report.warn(
                f"--max-minutes {args.max_minutes}: even the smallest sizes (n_per_kind "
                f"{sizes.n_per_kind}, max_new_tokens {sizes.max_new_tokens}) are estimated at "
                f"{sizes.estimate_s:.0f} s of work; the report will run over its budget"
            )
    estimate = estimate_seconds(
        args.sections, available, args.n_per_kind, args.max_new_tokens, rate
    )
    plan["estimate_s"] = round(elapsed + calibration.seconds + estimate, 1)
    message = (
        f"estimated report time {plan['estimate_s']:.0f} s (n_per_kind {args.n_per_kind}, "
        f"max_new_tokens {args.max_new_tokens}, {len(args.sections)} sections; calibration "
        f"{rate * 1e3:.3f} ms per decoded prompt-token)"
    )
    logging.getLogger("interp.cli").info("%s", message)
    print(message, file=sys.stderr)
    return plan


def _progress(
    run: dict[str, Any],
    done: Mapping[str, float],
    todo: Sequence[str],
    sets: Mapping[str, PromptSet],
    args: argparse.Namespace,
    started: float,
) -> None:
    """After a section: the remaining time, re-estimated from how the sections so far went."""
    from interp.report.budget import remaining_seconds

    left = [s for s in todo if s not in done]
    remaining = remaining_seconds(
        done, left, sum(len(v) for v in sets.values()), args.max_new_tokens,
        run["calibration"]["seconds_per_unit"],
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    run.setdefault("progress", []).append(
        {"after": list(done)[-1], "elapsed_s": round(elapsed, 1),
         "remaining_estimate_s": round(remaining, 1)}
    )  # fmt: skip
    if left:
        message = f"after {list(done)[-1]}: {elapsed:.0f} s so far, about {remaining:.0f} s left"
        logging.getLogger("interp.cli").info("%s", message)
        print(message, file=sys.stderr)


def _settings_html(run: Mapping[str, Any]) -> str:
    """The "Settings used" section: sizes, sections, seed, threads, estimate vs wall time."""
    rows = [
        ["n_per_kind (at most, per kind)", run["n_per_kind"]],
        ["max_new_tokens", run["max_new_tokens"]],
        ["sections", ", ".join(run["sections"])],
        ["seed (samplers, splits, fits, bootstrap)", run["seed"]],
        ["threads", run["threads"] if run["threads"] else "torch default"],
        ["preset", run.get("preset") or "none"],
        ["--max-minutes", str(run.get("budget", {}).get("max_minutes", "not given"))],
        ["estimated wall time (s)", f"{run['estimate_s']:.1f}"],
        ["measured wall time (s)", f"{run['wall_s']:.1f}"],
        [
            "time left, re-estimated after each section (s)",
            ", ".join(
                f"{p['after']} {p['remaining_estimate_s']:.0f}" for p in run.get("progress", [])
            ),
        ],
    ]
    from interp.report import table_html

    return (
        "<p>What this page was measured with. The estimate comes from timing "
        f"{run['calibration']['n_prompts']} greedy answers of {run['calibration']['max_new_tokens']} "
        "tokens on the model before any section ran, times the decoded prompt-tokens of each "
        "section (the cost model of <code>interp.report.budget</code>).</p>"
        + table_html(rows, ["setting", "value"])
    )


def cmd_report(args: argparse.Namespace) -> int:
    """Run `interp report`."""
    import interp
    from interp.report import QUICK, Report, model_metrics

    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown report section(s) {unknown}; choose from {list(SECTIONS)}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise SystemExit(f"--max-minutes must be above 0, got {args.max_minutes}")
    if args.quick:
        args.n_per_kind = min(args.n_per_kind, QUICK["n_per_kind"])
        args.max_new_tokens = min(args.max_new_tokens, QUICK["max_new_tokens"])
    threads = args.threads or (1 if _is_organism(args.model) else None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    _writable_out_dir(args.out)
    started = time.perf_counter()
    report = Report(title=f"interp report: {args.model}")
    with report.timed("load_model"):
        model = interp.load_model(args.model)
        info = interp.model_info(model)
    report.metrics["model"] = model_metrics(info)
    report.add(
        "Model",
        f"<p>{html.escape(info.name)}: {html.escape(info.family)}, {info.n_layers} layers, "
        f"d_model {info.d_model}, {info.n_params:,} parameters; system role: "
        f"{info.has_system_role}.</p>",
    )
    with report.timed("prompts"):
        sets = report_prompt_sets(args.model, args.n_per_kind, args.data_dir, REPORT_SEED)
    plan = _plan(args, report, model, sets, time.perf_counter() - started)
    with report.timed("prompts"):
        sets = report_prompt_sets(args.model, args.n_per_kind, args.data_dir, REPORT_SEED)
        train, val = stage_sets(args.model, args.data_dir, args.n_per_kind)
    run: dict[str, Any] = {
        "threads": threads,
        "sections": list(args.sections),
        "n_per_kind": args.n_per_kind,
        "n_measured": {kind: len(v) for kind, v in sets.items()},
        "max_new_tokens": args.max_new_tokens,
        "seed": REPORT_SEED,
        "preset": "quick" if args.quick else None,
        **plan,
        "versions": interp.library_versions(),
    }
    report.metrics["run"] = run
    todo = [name for name in SECTIONS if name in args.sections]
    done: dict[str, float] = {}
    for name in todo:
        section_start = time.perf_counter()
        _run_section(name, report, model, info, sets, train, val, args)
        done[name] = time.perf_counter() - section_start
        _progress(run, done, todo, sets, args, started)
        problem = (
            check_organism_card(report, args.model, sets, args)
            if (name == "baseline" and _is_organism(args.model))
            else ""
        )
        if problem:  # every later number would be built on a broken model: stop here
            report.warn(problem)
            path = _finish(report, run, started, args.out)
            print(f"error: {problem}\nwrote {path} (baseline only, flagged)", file=sys.stderr)
            return EXIT_BEHAVIOUR_MISMATCH
    path = _finish(report, run, started, args.out)
    print(f"wrote {path} and {Path(args.out) / 'metrics.json'}")
    timings = report.metrics.get("timings", {})
    print(
        "stage times (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
        + f"; wall {run['wall_s']:.1f} (estimated {run['estimate_s']:.1f})",
        file=sys.stderr,
    )
    for message in report.metrics.get("warnings", []):
        print(f"warning: {message}", file=sys.stderr)
    return 0


def _finish(report: Any, run: dict[str, Any], started: float, out: str | Path) -> Path:
    """Record the wall time, add the "Settings used" section (second on the page), write."""
    run["wall_s"] = round(time.perf_counter() - started, 1)
    report.sections.insert(1, ("Settings used", _settings_html(run)))
    return Path(report.write(out))


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
