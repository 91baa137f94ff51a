"""interp against the tools a user would otherwise pick (issue 18, item 1): `make bench-peers`.

Runs in its own venv (`.venv-peers`, built by the Makefile from the project's locked torch and
runtime lock, then the peers of `requirements/peers.in`, each installed on its own by
`python benchmarks/bench_peers.py install`). A peer that fails to install or to run is
reported with its error in the entry's `peers` field, never dropped.

Three comparisons, on the model organism and (with `--models`) `smollm2-135m-safety`:

1. caching the last-token residual of every layer (`resid_pre` of each block and the final
   norm's output, i.e. HF's `hidden_states`) for 256 prompts in batches of 32, every peer
   given the same encoded batches: interp (`collect_batch`; `collect_activations`, which also
   renders and tokenises, is listed beside it), nnsight (`trace` + `.save()`),
   TransformerLens `run_with_cache` with a names filter on the bridge, and HF
   `output_hidden_states`. Each peer's states are checked against HF's (allclose) before its
   time counts.
2. steered greedy generation: a refusal direction added at the input of one block at every
   position with a fixed coefficient: interp (`ActAdd` + `apply` + `generate`), repeng
   `ControlModel`, steering-vectors and nnsight. Each peer's tokens are checked against
   interp's (token-identical); the peers hook the output of block `layer - 1`, which is the
   same tensor as the input of block `layer`.
3. refusal-direction quality: heretic's per-layer directions and its abliteration, from its
   own CLI with a stated search budget, against interp's selected direction.

Timings are interleaved (every round runs each peer once, in a rotated order; several
rounds, the median kept) so that load from other jobs on the machine hits every peer alike;
the default torch thread count is kept. Ratios are to the fastest peer whose output was
correct; a fast wrong answer does not count.

The module imports without the peers: each is imported inside the function that uses it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ORGANISM = REPO / "assets" / "organism"
PEERS_IN = REPO / "requirements" / "peers.in"
SPEED_TARGET = 1.05
OURS = "interp"


# --- installing the peers -------------------------------------------------------------------


def read_peers(text: str) -> list[str]:
    """The requirement specs of a peers.in file: one per line, comments and blanks skipped.

    >>> read_peers("# c\\nnsight==0.8.1  # why\\n\\nrepeng==0.4.0\\n")
    ['nnsight==0.8.1', 'repeng==0.4.0']
    """
    specs = []
    for line in text.splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec:
            specs.append(spec)
    return specs


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def plan_install(report: Mapping[str, Any], installed: Mapping[str, str]) -> dict[str, Any]:
    """Split a `pip install --dry-run --report` into new packages and changes to installed ones.

    Args:
        report: pip's JSON installation report for one peer.
        installed: canonical name -> version of what the venv holds now.

    Returns:
        `{"new": [name==version, ...], "conflicts": [{"name", "have", "wanted"}, ...]}`; a
        peer with conflicts is installed with `--no-deps` plus its new packages only.
    """
    new, conflicts = [], []
    for item in report.get("install", []):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        have = installed.get(_canon(name))
        if have is None:
            new.append(f"{name}=={version}")
        elif have != version:
            conflicts.append({"name": name, "have": have, "wanted": version})
    return {"new": sorted(new), "conflicts": sorted(conflicts, key=lambda c: c["name"])}


def _installed() -> dict[str, str]:
    return {_canon(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False
    )


def _tail(text: str, n: int = 1200) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith("WARNING: Location")]
    return "\n".join(lines)[-n:]


def install_peer(spec: str) -> dict[str, Any]:
    """Install one peer into this venv without changing any installed package; say what happened."""
    dry = _pip("install", "--dry-run", "--quiet", "--report", "-", spec)
    if dry.returncode != 0:
        return {"spec": spec, "ok": False, "error": _tail(dry.stderr or dry.stdout)}
    plan = plan_install(json.loads(dry.stdout), _installed())
    if plan["conflicts"]:
        # Its own dependencies would replace locked packages (torch, transformers, numpy...):
        # take the peer and the packages it adds, none of the replacements.
        result = _pip("install", "--quiet", "--no-deps", spec, *plan["new"])
        mode = "--no-deps (withheld: the conflicts listed)"
    else:
        result = _pip("install", "--quiet", spec)
        mode = "with its dependencies (none conflicts with the lock)"
    record = {"spec": spec, "mode": mode, **plan, "ok": result.returncode == 0}
    if result.returncode != 0:
        record["error"] = _tail(result.stderr or result.stdout)
    return record


def install(peers_in: Path, record_path: Path) -> int:
    """Install every peer of `peers_in` on its own and write what happened to `record_path`."""
    records = [install_peer(spec) for spec in read_peers(peers_in.read_text())]
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    os.replace(tmp, record_path)
    for rec in records:
        print(f"{rec['spec']:28s} {'ok' if rec['ok'] else 'FAILED'}  {rec.get('mode', '')}")
    return 0


# --- bookkeeping: interleaved timing, checks, ratios ----------------------------------------


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    rounds: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each function, run in rounds (ABAB), the order rotated every round.

    Every round calls each function once, so a slow spell of the machine (other jobs on the
    same cores) lands on all of them alike; rotating the order keeps any one from always
    running first or last after another's caches.
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            start = clock()
            fns[name]()
            times[name].append(clock() - start)
    return times


def ok(detail: str, **extra: Any) -> dict[str, Any]:
    """A passed correctness check."""
    return {"ok": True, "detail": detail, **extra}


def failed(detail: str, **extra: Any) -> dict[str, Any]:
    """A failed correctness check, or a peer that could not run (the error as `detail`)."""
    return {"ok": False, "detail": detail, **extra}


def states_check(reference: Any, states: Any, *, atol: float, rtol: float) -> dict[str, Any]:
    """Whether `states` equals `reference` (same shape, allclose); the largest difference."""
    import torch

    if tuple(states.shape) != tuple(reference.shape):
        return failed(f"shape {tuple(states.shape)} != reference {tuple(reference.shape)}")
    diff = float((states.double() - reference.double()).abs().max())
    close = bool(torch.allclose(states.double(), reference.double(), atol=atol, rtol=rtol))
    what = f"allclose to HF output_hidden_states (atol={atol:g}, rtol={rtol:g})"
    return (ok if close else failed)(f"{what}; max |diff| {diff:.2e}", max_abs_diff=diff)


def tokens_check(reference: Sequence[Sequence[int]], tokens: Sequence[Sequence[int]]) -> dict:
    """Whether every row of greedy tokens equals the reference; where the first one differs.

    >>> tokens_check([[1, 2], [3]], [[1, 2], [3]])["ok"]
    True
    >>> tokens_check([[1, 2], [3]], [[1, 5], [3]])["first_difference"]
    [0, 1]
    """
    if len(tokens) != len(reference):
        return failed(f"{len(tokens)} rows, the reference has {len(reference)}")
    bad = [i for i, (a, b) in enumerate(zip(reference, tokens, strict=True)) if list(a) != list(b)]
    if not bad:
        return ok(f"token-identical greedy output on all {len(reference)} prompts")
    row = bad[0]
    a, b = list(reference[row]), list(tokens[row])
    pos = next(
        (j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return failed(
        f"{len(bad)} of {len(reference)} prompts differ; first at prompt {row}, token {pos}",
        first_difference=[row, pos],
        rows_differing=len(bad),
    )


def summarize(
    times: Mapping[str, Sequence[float]],
    checks: Mapping[str, Mapping[str, Any]],
    ours: str = OURS,
) -> dict[str, Any]:
    """Medians and ratios of the correct peers; `value` is ours over the fastest other one.

    A peer counts only if its check passed: a fast wrong answer is reported, never compared
    against. `value` is None when no other peer was correct.

    Raises:
        ValueError: our own output failed its check (a bug to fix before any timing counts).
    """
    if not checks.get(ours, {}).get("ok"):
        raise ValueError(f"{ours}'s own output failed its check: {checks.get(ours)}")
    median = {name: statistics.median(t) for name, t in times.items() if t}
    correct = [n for n in median if checks.get(n, {}).get("ok")]
    fastest = min(correct, key=median.__getitem__)
    # interp's own variants (e.g. "interp collect_activations (...)") are shown, not peers.
    others = [n for n in correct if n != ours and not n.startswith(f"{ours} ")]
    best_other = min(others, key=median.__getitem__) if others else None
    return {
        "median_s": {n: round(median[n], 5) for n in median},
        "ratio_to_fastest_correct": {n: round(median[n] / median[fastest], 3) for n in correct},
        "fastest_correct": fastest,
        "fastest_other_correct": best_other,
        "value": None if best_other is None else round(median[ours] / median[best_other], 3),
    }


def speed_entry(
    what: str,
    times: Mapping[str, Sequence[float]],
    checks: Mapping[str, Mapping[str, Any]],
    installs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A results.json entry: ours over the fastest correct peer, target 1.05x, with the checks.

    Every peer appears in `peers` with its check (or the error that stopped it) and, where it
    ran, its median and ratio; one that did not install carries its install record.
    """
    summary = summarize(times, checks)
    peers: dict[str, Any] = {}
    for name in dict.fromkeys([*checks, *times]):
        row: dict[str, Any] = {"check": dict(checks.get(name, failed("never ran")))}
        if name in summary["median_s"]:
            row["median_s"] = summary["median_s"][name]
        if name in summary["ratio_to_fastest_correct"]:
            row["ratio_to_fastest_correct"] = summary["ratio_to_fastest_correct"][name]
        if installs and name in installs and not installs[name].get("ok", True):
            row["install"] = dict(installs[name])
        peers[name] = row
    entry: dict[str, Any] = {
        "value": summary["value"],
        "target": SPEED_TARGET,
        "better": "lower",
        "what": what,
        "correctness": {n: bool(p["check"]["ok"]) for n, p in peers.items()},
        "fastest_correct": summary["fastest_correct"],
        "peers": peers,
    }
    if summary["value"] is None:
        # Nothing to compare against: shown, not judged.
        entry.update(value=1.0, contrast=True, what=what + " (no other peer was correct)")
    return entry


# --- the setting: one model, the same prompts and batches for every peer --------------------


class Setting:
    """One model as every peer sees it: the bridge, HF copies, prompts and encoded batches."""

    def __init__(self, model_dir: Path, tag: str, sizes: Mapping[str, int]) -> None:
        import torch

        import interp

        torch.manual_seed(0)
        self.dir, self.tag, self.sizes = model_dir, tag, dict(sizes)
        self.model = interp.load_model(model_dir)
        self.info = interp.model_info(self.model)
        self.train, self.val, self.test = _prompt_sets(tag, self.sizes["train"])
        self.batch_size = self.sizes["batch"]

    def hf(self) -> Any:
        """A fresh HF copy of the model, eager attention as the bridge runs it."""
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(self.dir, attn_implementation="eager")
        return hf.eval()

    def encoded(self, texts: Sequence[str]) -> list[Any]:
        """Consecutive left-padded batches of `texts`, rendered by interp (shared by all)."""
        import interp

        b = self.batch_size
        return [interp.encode(self.model, texts[i : i + b]) for i in range(0, len(texts), b)]

    def describe(self) -> str:
        """The model's shape, for the entries' `what`."""
        return f"{self.tag}: {self.info.n_layers} layers, d_model {self.info.d_model}"


def _prompt_sets(tag: str, n: int) -> tuple[dict[str, list[str]], ...]:
    """Harmful / harmless train, validation and held-out test prompts, `n` of each kind at most."""
    kinds = ("harmful", "harmless")
    if tag == "organism":
        from interp import organism

        return tuple(
            {k: list(organism.prompts(split, k).texts)[:n] for k in kinds}
            for split in ("train", "val", "test")
        )
    from interp import data

    data_dir = REPO.parent / "shared" / "data"
    sets = []
    for split in ("train", "val", "test"):
        ps = data.public_prompts(split, kinds, data_dir=data_dir, max_per_kind=n)
        sets.append({k: list(ps.filter(kind=k).texts) for k in kinds})
    return tuple(sets)


def _guarded(name: str, fn: Callable[[], Any], errors: dict[str, dict]) -> Any:
    """Run a peer's setup; an exception becomes that peer's failed check (type and message)."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - any peer failure is a result to report
        errors[name] = failed(f"{type(err).__name__}: {str(err)[:400]}")
        return None


def _import_repeng() -> Any:
    """repeng 0.4.0, with NumPy 2's removed alias `np.float_` restored if that is all it lacks."""
    import numpy

    try:
        import repeng
    except AttributeError as err:
        if "float_" not in str(err):
            raise
        numpy.float_ = numpy.float64  # type: ignore[attr-defined]
        import repeng

        repeng.SHIM = f"ran with numpy.float_ = numpy.float64 restored ({err})"  # type: ignore[attr-defined]
    return repeng


# --- 1. caching the last-token residual of every layer --------------------------------------


def _cache_peers(s: Setting, texts: list[str]) -> tuple[dict[str, Callable], dict[str, dict]]:
    """name -> fn() returning [prompts, n_layers + 1, d_model] last-token states, and errors."""
    import torch

    import interp
    from interp.sites import Site

    n_layers = s.info.n_layers
    batches = s.encoded(texts)
    hf = s.hf()
    errors: dict[str, dict] = {}

    from interp.activations import collect_batch

    sites = [Site("resid_pre", layer) for layer in range(n_layers)] + [Site("ln_final")]

    @torch.no_grad()
    def ours() -> torch.Tensor:
        # The same encoded batches the peers get, so that all time the same work.
        parts = []
        for b in batches:
            kept = collect_batch(s.model, b, sites, ["last"])
            parts.append(torch.cat([kept[site.label] for site in sites], dim=1))
        return torch.cat(parts)

    def ours_rendering() -> torch.Tensor:
        acts = interp.collect_activations(
            s.model,
            texts,
            ["resid_pre", "ln_final"],
            ["last"],
            batch_size=s.batch_size,
            progress=False,
        )
        layers = acts.stack("resid_pre").transpose(0, 1)
        return torch.cat([layers, acts.get("ln_final")[:, None]], dim=1)

    @torch.no_grad()
    def hf_hidden() -> torch.Tensor:
        parts = []
        for b in batches:
            out = hf(
                b.tokens,
                attention_mask=b.attention_mask,
                output_hidden_states=True,
                logits_to_keep=1,
            )
            parts.append(torch.stack([h[:, -1] for h in out.hidden_states], dim=1))
        return torch.cat(parts)

    names = [Site("resid_pre", layer).hook_name for layer in range(n_layers)]
    names.append(Site("ln_final").hook_name)

    @torch.no_grad()
    def tl_cache() -> torch.Tensor:
        parts = []
        for b in batches:
            _, cache = s.model.run_with_cache(
                b.tokens, attention_mask=b.attention_mask, names_filter=names
            )
            parts.append(torch.stack([cache[n][:, -1] for n in names], dim=1))
        return torch.cat(parts)

    fns: dict[str, Callable] = {
        OURS: ours,
        "interp collect_activations (renders and tokenises the texts too)": ours_rendering,
        "hf output_hidden_states": hf_hidden,
        "transformerlens run_with_cache": tl_cache,
    }
    lm = _guarded("nnsight", lambda: _nnsight_model(hf, s.model.tokenizer), errors)
    if lm is not None:
        fns["nnsight"] = lambda: _nnsight_cache(lm, batches, n_layers)
    return fns, errors


def _nnsight_model(hf: Any, tokenizer: Any) -> Any:
    from nnsight import TransformersModel

    return TransformersModel(hf, tokenizer=tokenizer)


def _nnsight_cache(lm: Any, batches: Sequence[Any], n_layers: int) -> Any:
    import torch

    parts = []
    for b in batches:
        saved: list[Any] = []
        with (
            torch.no_grad(),
            lm.trace({"input_ids": b.tokens, "attention_mask": b.attention_mask}, logits_to_keep=1),
        ):
            for layer in range(n_layers):
                saved.append(lm.model.layers[layer].input[:, -1].save())
            saved.append(lm.model.norm.output[:, -1].save())
        parts.append(torch.stack(list(saved), dim=1))
    return torch.cat(parts)


def bench_cache(s: Setting, rounds: int) -> dict[str, Any]:
    """Entry for caching every layer's last-token residual (HF's hidden states) of N prompts."""
    n = s.sizes["cache"]
    texts = (s.train["harmful"] + s.train["harmless"]) * (1 + n // 2)
    texts = texts[:n]
    fns, checks = _cache_peers(s, texts)
    reference = fns["hf output_hidden_states"]()
    tol = s.sizes["atol"]
    for name, fn in list(fns.items()):
        try:
            checks[name] = states_check(reference, fn(), atol=tol, rtol=tol)
        except Exception as err:  # noqa: BLE001 - a peer that fails to run is a result
            checks[name] = failed(f"{type(err).__name__}: {str(err)[:400]}")
        if not checks[name]["ok"]:
            fns.pop(name)  # a wrong or failing peer is reported, not timed
    times = interleaved(fns, rounds)
    what = (
        f"cache the last-token residual of every layer (resid_pre of each block + ln_final = HF "
        f"hidden_states) for {n} prompts, batch {s.batch_size}, every peer given the same encoded "
        f"batches; interp.collect_batch / fastest correct peer (interp.collect_activations, "
        f"which also renders and tokenises, listed beside it); {rounds} interleaved rounds, median "
        f"({s.describe()})"
    )
    return speed_entry(what, times, checks)


# --- 2. steered greedy generation -----------------------------------------------------------


def _by_length(s: Setting, texts: Sequence[str]) -> list[str]:
    """`texts` sorted by rendered length, so that interp.generate's batches are consecutive."""
    import interp

    return sorted(texts, key=lambda t: len(interp.encode(s.model, [t]).tokens[0]))


def _hf_generate(hf: Any, s: Setting, batches: Sequence[Any], steps: int) -> list[list[int]]:
    """Greedy HF generate over the shared batches, new tokens cut at the first EOS."""
    import torch

    from interp.generation import cut_at_eos, eos_token_ids

    eos = eos_token_ids(s.model)
    rows: list[list[int]] = []
    with torch.no_grad():
        for b in batches:
            out = hf.generate(
                b.tokens,
                attention_mask=b.attention_mask,
                max_new_tokens=steps,
                do_sample=False,
                eos_token_id=sorted(eos),
                pad_token_id=s.model.tokenizer.pad_token_id,
            )
            rows += [cut_at_eos(r, eos) for r in out[:, b.tokens.shape[1] :].tolist()]
    return rows


def _steer_peers(
    s: Setting, texts: list[str], vector: Any, layer: int, coeff: float, steps: int
) -> tuple[dict[str, Callable], dict[str, dict]]:
    """name -> fn() returning steered greedy tokens per prompt, and setup errors.

    interp adds `coeff * vector` at the input of block `layer` (`resid_pre`); repeng and
    steering-vectors add to the output of block `layer - 1`, the same tensor; nnsight edits
    the input of block `layer`; the reference is a plain torch pre-hook on that block.
    """
    import interp

    batches = s.encoded(texts)
    delta = coeff * vector
    errors: dict[str, dict] = {}
    hf = s.hf()

    def ours() -> list[list[int]]:
        with interp.apply(s.model, interp.ActAdd(vector, coeff, layer)):
            out = interp.generate(s.model, texts, max_new_tokens=steps, batch_size=s.batch_size)
        return [list(t) for t in out.tokens]

    def hf_hook() -> list[list[int]]:
        def add(_module: Any, args: tuple, kwargs: dict) -> tuple:
            return (args[0] + delta, *args[1:]), kwargs

        handle = hf.model.layers[layer].register_forward_pre_hook(add, with_kwargs=True)
        try:
            return _hf_generate(hf, s, batches, steps)
        finally:
            handle.remove()

    fns: dict[str, Callable] = {OURS: ours, "hf generate + torch pre-hook": hf_hook}
    lm = _guarded("nnsight", lambda: _nnsight_model(s.hf(), s.model.tokenizer), errors)
    if lm is not None:
        fns["nnsight"] = lambda: _nnsight_steer(lm, s, batches, layer, delta, steps)
    sv = _guarded("steering-vectors", lambda: _steering_vector(layer, delta), errors)
    if sv is not None:
        fns["steering-vectors"] = lambda: _sv_steer(sv, hf, s, batches, steps)
    cm = _guarded("repeng", lambda: _repeng_model(s, layer, delta), errors)
    if cm is not None:
        fns["repeng"] = lambda: _hf_generate(cm, s, batches, steps)
    return fns, errors


def _nnsight_steer(
    lm: Any, s: Setting, batches: Sequence[Any], layer: int, delta: Any, steps: int
) -> list[list[int]]:
    import torch

    from interp.generation import cut_at_eos, eos_token_ids

    eos = eos_token_ids(s.model)
    rows: list[list[int]] = []
    for b in batches:
        kw = {
            "max_new_tokens": steps,
            "do_sample": False,
            "eos_token_id": sorted(eos),
            "pad_token_id": s.model.tokenizer.pad_token_id,
        }
        with torch.no_grad(), lm.generate(**kw) as tracer:
            with tracer.invoke({"input_ids": b.tokens, "attention_mask": b.attention_mask}):
                for _ in tracer.all():
                    lm.model.layers[layer].input = lm.model.layers[layer].input + delta
            with tracer.invoke():
                out = tracer.result.save()
        rows += [cut_at_eos(r, eos) for r in out[:, b.tokens.shape[1] :].tolist()]
    return rows


def _steering_vector(layer: int, delta: Any) -> Any:
    from steering_vectors import SteeringVector

    return SteeringVector(layer_activations={layer - 1: delta}, layer_type="decoder_block")


def _sv_steer(sv: Any, hf: Any, s: Setting, batches: Sequence[Any], steps: int) -> list:
    with sv.apply(hf, multiplier=1.0):
        return _hf_generate(hf, s, batches, steps)


def _repeng_model(s: Setting, layer: int, delta: Any) -> Any:
    repeng = _import_repeng()
    hf = s.hf()
    cm = repeng.ControlModel(hf, [layer - 1])
    vector = repeng.ControlVector(hf.config.model_type, {layer - 1: delta.numpy()})
    cm.set_control(vector, 1.0)
    return cm


def steering_direction(s: Setting) -> tuple[Any, int]:
    """interp's difference-in-means vector at the last prompt token, at the middle block."""
    import interp

    layer = max(1, s.info.n_layers // 2)
    cands = interp.diff_in_means(
        s.model,
        s.train["harmful"],
        s.train["harmless"],
        positions=("last",),
        batch_size=s.batch_size,
    )
    return cands.direction(layer, "last").vector, layer


def bench_steer(s: Setting, rounds: int) -> dict[str, Any]:
    """Entry for greedy generation with a direction added at one block, every position."""
    vector, layer = steering_direction(s)
    n, steps, coeff = s.sizes["steer"], s.sizes["steps"], 1.0
    texts = _by_length(s, s.test["harmless"][:n])
    fns, checks = _steer_peers(s, texts, vector, layer, coeff, steps)
    reference = fns["hf generate + torch pre-hook"]()
    for name, fn in list(fns.items()):
        try:
            checks[name] = tokens_check(reference, fn())
        except Exception as err:  # noqa: BLE001 - a peer that fails to run is a result
            checks[name] = failed(f"{type(err).__name__}: {str(err)[:400]}")
        if not checks[name]["ok"]:
            fns.pop(name)
    repeng = sys.modules.get("repeng")
    if repeng is not None and hasattr(repeng, "SHIM") and "repeng" in checks:
        checks["repeng"]["detail"] += f"; {repeng.SHIM}"
    times = interleaved(fns, rounds)
    what = (
        f"steered greedy generation: interp's diff-in-means vector (x{coeff:g}) added at the "
        f"input of block {layer} at every position, {len(texts)} harmless test prompts, batch "
        f"{s.batch_size}, up to {steps} new tokens; interp ActAdd+apply+generate / fastest "
        f"correct peer (checked token-identical to HF generate with a torch pre-hook); "
        f"{rounds} interleaved rounds, median ({s.describe()})"
    )
    return speed_entry(what, times, checks)


# --- 3. refusal-direction quality against heretic -------------------------------------------

# heretic's default budget is 200 Optuna trials (60 random startup trials); these are smaller,
# stated in the entry, so that a run stays within minutes on 2 CPU cores.
HERETIC_BUDGET = {"organism": (40, 15), "smollm2-135m-safety": (8, 4)}

_HERETIC_CHILD = r"""
import json, sys
import optuna, torch
import torch.nn.functional as F
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from safetensors.torch import save_file
from heretic.config import Settings
from heretic.model import AbliterationParameters, Model
from heretic.utils import load_prompts

out, journal = sys.argv[1], sys.argv[2]
sys.argv = ["heretic", *sys.argv[3:]]
torch.set_grad_enabled(False)
study = optuna.load_study(study_name="heretic", storage=JournalStorage(JournalFileBackend(journal)))
# The settings the CLI ran with, after its response-prefix check (as its --reproduce does).
settings = Settings.model_validate(json.loads(study.user_attrs["settings"]))
model = Model(settings)
good = model.get_residuals_mean(load_prompts(settings, settings.good_prompts))
bad = model.get_residuals_mean(load_prompts(settings, settings.bad_prompts))
raw = F.normalize(bad - good, p=2, dim=1)
directions = raw
if settings.orthogonalize_direction:  # heretic's own steps, as in heretic.main.run
    g = F.normalize(good, p=2, dim=1)
    directions = F.normalize(raw - torch.sum(raw * g, dim=1).unsqueeze(1) * g, p=2, dim=1)
done = [t for t in study.trials if t.state == TrialState.COMPLETE]
# The top of heretic's own list: fewest refusals, then lowest KL divergence.
best = min(done, key=lambda t: (t.user_attrs["refusals"], t.user_attrs["kl_divergence"]))
params = {k: AbliterationParameters(**v) for k, v in best.user_attrs["parameters"].items()}
model.reset_model()
model.abliterate(directions, best.user_attrs["direction_index"], params)
merged = model.get_merged_model()
merged.save_pretrained(out + "/model")
model.tokenizer.save_pretrained(out + "/model")
save_file({"raw": raw.float().contiguous(), "directions": directions.float().contiguous()},
          out + "/directions.safetensors")
info = {k: best.user_attrs[k] for k in ("refusals", "kl_divergence", "base_refusals",
                                         "n_bad_prompts", "direction_index", "index")}
info["n_trials"] = len(done)
json.dump(info, open(out + "/trial.json", "w"))
"""


def _write_lines(path: Path, texts: Sequence[str]) -> str:
    path.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
    return str(path)


def _heretic_args(s: Setting, tmp: Path, trials: int, startup: int) -> list[str]:
    files = {
        name: _write_lines(tmp / f"{name}.txt", texts)
        for name, texts in {
            "good": s.train["harmless"],
            "bad": s.train["harmful"],
            "good-eval": s.val["harmless"],
            "bad-eval": s.val["harmful"],
        }.items()
    }
    return [
        "--model",
        str(s.dir),
        "--seed",
        "0",
        "--n-trials",
        str(trials),
        "--n-startup-trials",
        str(startup),
        "--device-map",
        "cpu",
        "--dtypes",
        '["float32"]',
        "--batch-size",
        str(s.batch_size),
        "--study-checkpoint-dir",
        str(tmp / "checkpoints"),
        "--good-prompts.dataset",
        files["good"],
        "--bad-prompts.dataset",
        files["bad"],
        "--good-evaluation-prompts.dataset",
        files["good-eval"],
        "--bad-evaluation-prompts.dataset",
        files["bad-eval"],
    ]


def run_heretic(s: Setting, tmp: Path) -> dict[str, Any]:
    """heretic's CLI with a stated budget, then its best trial abliterated and saved by its own code.

    Returns `{"ok", "detail", ...}`; on success also `model_dir`, `directions`, `trial`.
    """
    trials, startup = HERETIC_BUDGET[s.tag]
    args = _heretic_args(s, tmp, trials, startup)
    exe = Path(sys.executable).with_name("heretic")
    if not exe.exists():
        return failed(f"heretic is not installed in this venv ({exe} missing)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    cli = subprocess.run(
        [str(exe), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=3600,
    )
    seconds = time.perf_counter() - start
    journals = list((tmp / "checkpoints").glob("*.jsonl"))
    if not journals:
        return failed(
            f"heretic CLI wrote no study (rc {cli.returncode}): {_tail(cli.stdout + cli.stderr)}"
        )
    out = tmp / "heretic-out"
    out.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", _HERETIC_CHILD, str(out), str(journals[0]), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if child.returncode != 0:
        return failed(f"abliterating heretic's best trial failed: {_tail(child.stderr)}")
    from safetensors.torch import load_file

    return ok(
        f"heretic CLI, {trials} trials ({startup} startup), seed 0, {seconds:.0f}s; its "
        f"interactive menu after the search got no terminal (rc {cli.returncode}), so its best "
        "trial (fewest refusals, then lowest KL) was abliterated by heretic's Model.abliterate",
        model_dir=out / "model",
        directions=load_file(out / "directions.safetensors"),
        trial=json.loads((out / "trial.json").read_text()),
        budget=[trials, startup],
    )


def interp_direction(s: Setting) -> Any:
    """interp's selected refusal direction: diff-in-means on train, scored and chosen on val."""
    import interp
    from interp import refusal_direction as rd

    tokens = rd.refusal_tokens(s.model, s.train["harmful"], batch_size=s.batch_size)
    cands = interp.diff_in_means(
        s.model, s.train["harmful"], s.train["harmless"], batch_size=s.batch_size
    )
    table = rd.score_candidates(
        s.model, cands, s.val["harmful"], s.val["harmless"], tokens, batch_size=s.batch_size
    )
    # As the report does: relax the KL filter (x2, up to three times) when nothing passes.
    config = rd.SelectionConfig()
    for attempt in range(4):
        try:
            return rd.select_direction(table, config).direction, config.max_kl
        except interp.directions.DirectionError:
            if attempt == 3:
                raise
            config = rd.SelectionConfig(max_kl=2 * config.max_kl)
    raise AssertionError("unreachable")


def _removal(model: Any, s: Setting, base_logp: Any, interventions: Sequence[Any]) -> dict:
    """Held-out harmful refusal rate and first-token KL on harmless test prompts, one setup."""
    import interp
    from interp.evaluation.fidelity import mean_kl, next_token_logprobs

    judge = interp.SubstringJudge("dro")
    with interp.apply(model, *interventions):
        out = interp.generate(
            model, s.test["harmful"], max_new_tokens=s.sizes["steps"], batch_size=s.batch_size
        )
        logp = next_token_logprobs(model, s.test["harmless"], None, s.batch_size)
    flags = judge.is_refusal(out.texts, out.prompts)
    return {
        "harmful_refusal": round(sum(flags) / len(flags), 4),
        "harmless_first_token_kl": round(mean_kl(base_logp, logp), 5),
    }


def bench_heretic(s: Setting) -> dict[str, dict]:
    """Entries comparing interp's selected direction and ablation with heretic's abliteration."""
    import tempfile

    import torch

    import interp
    from interp.evaluation.fidelity import next_token_logprobs

    base_logp = next_token_logprobs(s.model, s.test["harmless"], None, s.batch_size)
    base = _removal(s.model, s, base_logp, [])
    direction, max_kl = interp_direction(s)
    ours = _removal(s.model, s, base_logp, [interp.DirectionalAblation(direction)])
    with tempfile.TemporaryDirectory() as tmp:
        her = run_heretic(s, Path(tmp))
        if her["ok"]:
            abliterated = interp.load_model(her["model_dir"])
            theirs = _removal(abliterated, s, base_logp, [])
            del abliterated
    tag = f"{s.tag}, {len(s.test['harmful'])} harmful / {len(s.test['harmless'])} harmless test"
    if not her["ok"]:
        entry = {
            "value": 1.0,
            "target": 0.0,
            "better": "lower",
            "contrast": True,
            "what": f"heretic could not be run ({tag})",
            "correctness": {"heretic": False},
            "peers": {"interp": ours, "base": base, "heretic": her},
        }
        return {f"peers/refusal_removal_vs_heretic[{s.tag}]": entry}
    unit = direction.unit.double()
    per_layer = her["directions"]["directions"].double()
    cos = torch.nn.functional.cosine_similarity(per_layer, unit[None], dim=1)
    raw_cos = torch.nn.functional.cosine_similarity(
        her["directions"]["raw"].double(), unit[None], dim=1
    )
    detail = {
        "base": base,
        "interp": ours,
        "heretic": theirs,
        "interp_direction": {
            "layer": direction.layer,
            "position": direction.position,
            "selection_max_kl": max_kl,
        },
        "heretic_trial": her["trial"],
        "heretic_run": her["detail"],
        "cosine_same_layer": round(float(cos[direction.layer]), 4),
        "cosine_same_layer_before_heretic_orthogonalisation": round(
            float(raw_cos[direction.layer]), 4
        ),
        "cosine_max_over_layers": round(float(cos.abs().max()), 4),
        "judge": "SubstringJudge('dro'), the same for every row",
    }
    what = (
        f"ablating interp's selected direction vs heretic's abliteration (budget "
        f"{her['budget'][0]} trials): held-out harmful refusal rate, interp minus heretic "
        f"({tag}; {s.sizes['steps']} new tokens)"
    )
    kl_what = (
        "first-token KL on harmless test prompts after ablation, interp minus heretic "
        f"(same setups; {tag})"
    )
    cosine = f"cosine interp/heretic at layer {direction.layer}: {detail['cosine_same_layer']}"
    return {
        f"peers/refusal_removal_vs_heretic[{s.tag}]": {
            "value": round(ours["harmful_refusal"] - theirs["harmful_refusal"], 4),
            "target": 0.0,
            "better": "lower",
            "what": what + "; " + cosine,
            "correctness": {"interp": True, "heretic": True},
            "peers": detail,
        },
        f"peers/harmless_kl_vs_heretic[{s.tag}]": {
            "value": round(ours["harmless_first_token_kl"] - theirs["harmless_first_token_kl"], 5),
            "target": 0.0,
            "better": "lower",
            "what": kl_what,
            "correctness": {"interp": True, "heretic": True},
            "peers": detail,
        },
    }


# --- the run --------------------------------------------------------------------------------

SIZES: dict[str, dict[str, Any]] = {
    # The organism: the 256 prompts for caching; a fast model, so many rounds.
    "organism": {
        "train": 64,
        "cache": 256,
        "batch": 32,
        "steer": 64,
        "steps": 32,
        "atol": 1e-5,
        "rounds": int(os.environ.get("BENCH_PEERS_ROUNDS", 7)),
    },
    # SmolLM2-135M on 2 CPU cores: smaller sizes so that a run stays within minutes.
    "smollm2-135m-safety": {
        "train": 32,
        "cache": 64,
        "batch": 16,
        "steer": 16,
        "steps": 16,
        "atol": 1e-4,
        "rounds": 3,
    },
}


def _model_dir(tag: str) -> Path:
    if tag == "organism":
        return ORGANISM
    from interp import zoo

    return Path(zoo.resolve(tag))


def install_records(path: Path | None = None) -> dict[str, dict]:
    """Peer name -> its install record from `make bench-peers` (empty when not installed so)."""
    path = path or Path(sys.prefix) / "peers-install.json"
    if not path.is_file():
        return {}
    return {re.split(r"[=<>]", r["spec"])[0]: r for r in json.loads(path.read_text())}


def _install_entry(records: Mapping[str, dict]) -> dict[str, Any]:
    peers = {}
    for spec in read_peers(PEERS_IN.read_text()):
        name = re.split(r"[=<>]", spec)[0]
        peers[name] = records.get(name, {"spec": spec, "ok": False, "error": "not installed"})
    return {
        "value": sum(bool(p.get("ok")) for p in peers.values()),
        "target": len(peers),
        "better": "higher",
        "what": "peers of requirements/peers.in installed in .venv-peers without changing a "
        "locked package (conflicting dependencies withheld, listed per peer)",
        "correctness": {n: bool(p.get("ok")) for n, p in peers.items()},
        "peers": peers,
    }


def run(models: Sequence[str] | None = None) -> dict[str, dict]:
    """All peer entries, for `benchmarks/run.py -k peers` (the models from BENCH_PEERS_MODELS)."""
    import torch

    tags = models or os.environ.get("BENCH_PEERS_MODELS", "organism").split(",")
    records = install_records()
    results: dict[str, dict] = {"peers/installed": _install_entry(records)}
    torch.set_grad_enabled(False)
    for tag in tags:
        setting = Setting(_model_dir(tag), tag, SIZES[tag])
        rounds = int(setting.sizes["rounds"])
        start = time.perf_counter()
        results[f"peers/cache_last_resid_all_layers[{tag}]"] = bench_cache(setting, rounds)
        results[f"peers/steered_generation[{tag}]"] = bench_steer(setting, rounds)
        if os.environ.get("BENCH_PEERS_HERETIC", "1") == "1":
            try:
                results |= bench_heretic(setting)
            except Exception as err:  # noqa: BLE001 - keep the speed entries of the run
                results[f"peers/refusal_removal_vs_heretic[{tag}]"] = {
                    "value": 1.0,
                    "target": 0.0,
                    "better": "lower",
                    "contrast": True,
                    "what": f"not measured: {type(err).__name__}: {str(err)[:300]}",
                    "correctness": {"heretic": False},
                }
        print(f"  ({tag}: {time.perf_counter() - start:.0f}s)", file=sys.stderr)
    return results


def _cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install the peers of requirements/peers.in one by one")
    inst.add_argument("--peers", default=str(PEERS_IN))
    inst.add_argument("--record", required=True)
    show = sub.add_parser("print", help="run the benchmarks and print the entries")
    show.add_argument("--models", default="organism")
    args = parser.parse_args()
    if args.command == "install":
        return install(Path(args.peers), Path(args.record))
    for name, entry in run(args.models.split(",")).items():
        print(name, json.dumps(entry)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
