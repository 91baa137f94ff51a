"""`interp report`: the prompt sets, the time budget, the sections in order, the page.

The report job of the command line (`interp.cli`): it resolves what to measure (the
organism's test split, or the public held-out sets), plans the sizes against a time budget
(`interp.report.budget`), runs each section of `interp.report` and writes the page. The
progress lines it prints go to stderr.
"""

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


KINDS = ("harmful", "harmless", "borderline", "jailbreak")


def _is_organism(model: str | Path) -> bool:
    """Whether `model` is a complete directory written by `interp organism train`.

    Raises:
        IncompleteOrganismError: It looks like one but has no complete card (a killed run);
            see `interp.organism.organism_card`.
    """
    from interp.organism import organism_card

    return organism_card(model) is not None


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


#: Fewest training prompts per kind a real model's fitting sections get (more with a larger
#: --n-per-kind): twice `interp.MIN_PER_CLASS` and a little, so that a model refusing 75 % of
#: harmful requests still gives 20 refusals and 20 compliant answers to learn from.
FIT_PER_KIND = 48


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
    from interp.report.budget import ModelShape, sample_for_calibration

    texts = texts_by_kind(sets)
    sample = sample_for_calibration(texts, CALIBRATION_PER_KIND, REPORT_SEED)
    with report.timed("calibration"):
        calibration = calibrate(model, sample, max_new_tokens=min(16, args.max_new_tokens))
    rate = calibration.seconds_per_unit
    shape = ModelShape.of(model)
    available = {kind: len(v) for kind, v in texts.items()}
    plan: dict[str, Any] = {
        "calibration": calibration.to_dict(),
        "cost_model": "interp.report.budget",
        "model_shape": shape.to_dict(),
    }
    if args.max_minutes is not None:
        budget = args.max_minutes * 60 - elapsed - calibration.seconds
        sizes = choose_sizes(
            max(budget, 1e-3), args.sections, available, rate,
            max_n_per_kind=args.n_per_kind, max_new_tokens=args.max_new_tokens, shape=shape,
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
        args.sections, available, args.n_per_kind, args.max_new_tokens, rate, shape
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
    from interp.report.budget import ModelShape, remaining_seconds

    left = [s for s in todo if s not in done]
    shape = ModelShape(**{k: v for k, v in run["model_shape"].items() if k != "n_candidates"})
    remaining = remaining_seconds(
        done, left, sum(len(v) for v in sets.values()), args.max_new_tokens,
        run["calibration"]["seconds_per_unit"], shape,
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
        # Fitting needs enough of each class whatever the measured sizes: at 24 train
        # prompts per kind smollm2-135m-safety gave 17 refusals, below interp.MIN_PER_CLASS.
        train, _ = stage_sets(args.model, args.data_dir, max(args.n_per_kind, FIT_PER_KIND))
        _, val = stage_sets(args.model, args.data_dir, args.n_per_kind)
    run: dict[str, Any] = {
        "threads": threads,
        "sections": list(args.sections),
        "n_per_kind": args.n_per_kind,
        "n_measured": {kind: len(v) for kind, v in sets.items()},
        "n_fit": {
            "train": {kind: len(v) for kind, v in train.items()},
            "val": {kind: len(v) for kind, v in val.items()},
        },
        "max_new_tokens": args.max_new_tokens,
        "seed": REPORT_SEED,
        "preset": "quick" if args.quick else None,
        **plan,
        "versions": interp.library_versions(),
    }
    report.metrics["run"] = run
    todo = [name for name in SECTIONS if name in args.sections]
    done: dict[str, float] = {}
    # The sections ask for the same plain answers more than once (the baseline's `none` is
    # the refusal direction's `base` and the comparison's `none`): decode each once.
    with interp.reuse_generations() as reuse:
        for name in todo:
            section_start = time.perf_counter()
            _run_section(name, report, model, info, sets, train, val, args)
            done[name] = time.perf_counter() - section_start
            run["generation_reuse"] = reuse.to_dict()
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
            left = todo[todo.index(name) + 1 :]
            if left:
                _checkpoint(report, run, started, args.out, left)
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


def _checkpoint(
    report: Any, run: dict[str, Any], started: float, out: str | Path, left: Sequence[str]
) -> None:
    """Write the page and metrics.json of the sections done so far, flagged as incomplete.

    A long run killed in a later section (out of memory, a lost session) keeps what it had
    measured; `metrics["run"]["sections_left"]` and a warning at the top of the page say what
    is missing. The final write replaces both files.
    """
    sections, warnings = list(report.sections), list(report.metrics.get("warnings", []))
    run["sections_left"] = list(left)
    report.metrics["warnings"] = [
        *warnings,
        f"incomplete report: written before the sections {', '.join(left)} had run",
    ]
    try:
        _finish(report, run, started, out)
    finally:
        report.sections[:] = sections
        del run["sections_left"]
        if warnings:
            report.metrics["warnings"] = warnings
        else:
            report.metrics.pop("warnings")


def _finish(report: Any, run: dict[str, Any], started: float, out: str | Path) -> Path:
    """Record the wall time, add the "Settings used" section (second on the page), write."""
    run["wall_s"] = round(time.perf_counter() - started, 1)
    report.sections.insert(1, ("Settings used", _settings_html(run)))
    return Path(report.write(out))


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
