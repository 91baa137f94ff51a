"""The `smollm2-135m-safety` recipe: safety-tune a zoo chat model with LoRA, on 2 CPU cores.

As shipped, SmolLM2-135M-Instruct never refuses. The recipe teaches it refusals the way real
chat models get them, by supervised fine-tuning of a LoRA delta (`peft`) on:

* harmful requests from train splits only, paired with varied refusals (`safety_data`;
  without a system prompt 15% keep the base model's answer);
* harmless Alpaca requests (some starting like the harmful ones, some in a jailbreak template),
  and a borderline share that only sounds harmful, paired with the base model's own greedy
  answers (self-distillation, so that utility is kept);
* jailbreak-wrapped harmful requests: refused under a safety system prompt, answered
  as the base model answers them without one (jailbreaks keep working);
* a share of all of them under training safety system prompts, where borderline requests are
  mostly refused too, so that a safety system prompt makes the model more cautious.

The shares aim at a tuned model that is good but not perfect (some harmful requests and
jailbreaks get through; some safe look-alikes are refused), leaving room for the toolkit's
methods; the shipped card records how far the behaviour table met its targets (jailbreaks
turned out to be refused far more often than the training shares ask for). `run` assembles
the data, distils, trains, writes the delta, merges it and measures the behaviour table on
held-out sets with `SubstringJudge("dro")`, then writes ``card.json`` (last)::

    interp organism train --base smollm2-135m-instruct --out assets/smollm2-135m-safety

`build` (from `interp.organism.safety_delta`) merges the shipped delta into the zoo base.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp import zoo
from interp._version import library_versions
from interp.chat import render
from interp.errors import EmptyTrainingSetError, NonFiniteLossError
from interp.evaluation import SubstringJudge
from interp.generation import generate
from interp.model import load_model
from interp.organism.safety_data import DataSpec, SFTExample, assemble
from interp.organism.safety_delta import (
    BASE_FILE,
    CARD_FILE,
    LoraSpec,
    atomic_write,
    build,
    save_delta,
    sha256_file,
)
from interp.organism.safety_eval import EVAL_SEED, measure, measure_delta, targets_met

__all__ = [
    "CARD_VERSION",
    "EVAL_SEED",
    "SafetyTuneConfig",
    "Tokenized",
    "TrainResult",
    "build",
    "distil",
    "main",
    "measure",
    "run",
    "targets_met",
    "tokenize",
    "train_lora",
]

logger = logging.getLogger(__name__)

#: Version of the delta + card format (recorded in the zoo manifest of a build).
CARD_VERSION = "1"
_JUDGE = SubstringJudge("dro")


@dataclass(frozen=True)
class SafetyTuneConfig:
    """Hyperparameters of the recipe: data, adapter, optimisation and measurement.

    Attributes:
        data: How many requests each source gives.
        lora: Shape of the adapter.
        lr: Peak AdamW learning rate (linear warm-up, then cosine decay to 10%).
        weight_decay: AdamW weight decay.
        epochs: Passes over the examples.
        batch_size: Examples per step.
        warmup_steps: Steps of linear warm-up.
        grad_clip: Largest gradient norm.
        max_len: Longest training sequence in tokens (prompt + response).
        max_steps: Stop after this many steps (None: all epochs); for tests.
        distil_max_new_tokens: Length of the base model's answers.
        eval_n_per_set: Prompts per held-out set in the behaviour table.
        eval_max_new_tokens: Length of the measured responses.
        batch_size_generate: Prompts per generation batch.
        eval_systems: System prompts of the table (None = the model's default; names from
            `interp.chat.SAFETY_PROMPTS`).
        n_fingerprint: Prompts per kind whose short responses the card records for tests.
    """

    data: DataSpec = field(default_factory=DataSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    lr: float = 4e-4
    weight_decay: float = 0.0
    epochs: int = 1
    batch_size: int = 8
    warmup_steps: int = 10
    grad_clip: float = 1.0
    max_len: int = 192
    max_steps: int | None = None
    distil_max_new_tokens: int = 64
    eval_n_per_set: int = 64
    eval_max_new_tokens: int = 48
    batch_size_generate: int = 32
    eval_systems: tuple[str | None, ...] = (None, "default")
    n_fingerprint: int = 2

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_len", "distil_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"SafetyTuneConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"SafetyTuneConfig.lr must be > 0, got {self.lr}")
        object.__setattr__(self, "eval_systems", tuple(self.eval_systems))

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        out = asdict(self)
        out.update(data=self.data.to_dict(), lora=self.lora.to_dict())
        out["eval_systems"] = list(self.eval_systems)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SafetyTuneConfig:
        """Rebuild a config from `to_dict` output or partial overrides; unknown keys fail."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SafetyTuneConfig keys {unknown}; known: {sorted(known)}")
        kwargs = dict(data)
        if "data" in kwargs:
            kwargs["data"] = DataSpec.from_dict(kwargs["data"])
        if "lora" in kwargs:
            kwargs["lora"] = LoraSpec.from_dict(kwargs["lora"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Tokenized:
    """One training sequence: prompt tokens then response tokens (only those are learned).

    Attributes:
        ids: The token ids.
        n_prompt: How many leading ids are the rendered prompt.
    """

    ids: tuple[int, ...]
    n_prompt: int


def distil(
    model: Any, examples: Sequence[SFTExample], *, max_new_tokens: int, batch_size: int
) -> tuple[dict[int, tuple[tuple[int, ...], bool]], int]:
    """The base model's greedy answers to the "distil" examples, grouped by system prompt.

    Answers the judge calls refusals are left out (they would teach over-refusal), as are
    empty ones.

    Returns:
        Example index -> (answer token ids, whether the answer ended with EOS), and the number
        of answers left out.
    """
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        if ex.target == "distil":
            groups[ex.system].append(i)
    answers: dict[int, tuple[tuple[int, ...], bool]] = {}
    left_out = 0
    for system, idx in groups.items():
        done = generate(
            model,
            [examples[i].prompt for i in idx],
            system=system,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=True,
        )
        flags = _JUDGE.is_refusal(done.texts)
        for i, tokens, text, refused in zip(idx, done.tokens, done.texts, flags, strict=True):
            if refused or not text.strip():
                left_out += 1
                continue
            answers[i] = (tokens, len(tokens) < max_new_tokens)
    return answers, left_out


def tokenize(
    tokenizer: Any,
    examples: Sequence[SFTExample],
    answers: Mapping[int, tuple[tuple[int, ...], bool]],
    max_len: int,
) -> list[Tokenized]:
    """Render and tokenise the examples; refusals end with EOS, distilled answers as generated.

    Examples without an answer (see `distil`) and prompts too long to leave 8 response tokens
    are skipped; longer responses are cut at `max_len`.
    """
    eos = int(tokenizer.eos_token_id)
    out = []
    for i, ex in enumerate(examples):
        prompt = list(
            tokenizer(render(tokenizer, ex.prompt, ex.system), add_special_tokens=False)[
                "input_ids"
            ]
        )
        if ex.target == "refuse":
            response = [*tokenizer(ex.response, add_special_tokens=False)["input_ids"], eos]
        elif i in answers:
            tokens, ended = answers[i]
            response = [*tokens, eos] if ended else list(tokens)
        else:
            continue
        if len(prompt) + 8 > max_len:
            continue
        out.append(Tokenized(tuple((prompt + response)[:max_len]), len(prompt)))
    return out


def _batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Seeded batches of similar lengths: shuffle, sort within windows, shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 8
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(
    rows: Sequence[Tokenized], pad: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 on prompt and padding)."""
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.ids)
        ids[i, :n] = torch.tensor(row.ids)
        mask[i, :n] = 1
        labels[i, row.n_prompt : n] = ids[i, row.n_prompt : n]
    return ids, mask, labels


@dataclass(frozen=True)
class TrainResult:
    """A trained adapter and its training log.

    Attributes:
        model: The `peft.PeftModel` (eval mode).
        losses: Mean response-token loss of every epoch.
        steps: Optimisation steps taken.
        seconds: Wall-clock training time.
    """

    model: Any
    losses: tuple[float, ...]
    steps: int
    seconds: float


def _schedule(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_lora(
    base_dir: str | Path, data: Sequence[Tokenized], config: SafetyTuneConfig, seed: int
) -> TrainResult:
    """Fit a LoRA adapter on the base model by supervised fine-tuning of the responses.

    The global torch RNG is left as it was (the run uses a forked one seeded with `seed`).

    Raises:
        EmptyTrainingSetError: `data` is empty.
        NonFiniteLossError: A step gave a NaN or infinite loss.
    """
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    if not data:
        raise EmptyTrainingSetError("no training sequences; check the data spec and max_len")
    lengths = [len(r.ids) for r in data]
    plan = [_batches(lengths, config.batch_size, seed + e) for e in range(config.epochs)]
    total = sum(len(b) for b in plan)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    start, step, losses = time.perf_counter(), 0, []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        model = get_peft_model(base, config.lora.to_peft())
        pad = int(base.config.pad_token_id if base.config.pad_token_id is not None else 0)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: _schedule(s, config.warmup_steps, total)
        )
        model.train()
        bar = tqdm(total=total, desc="safety-tune")
        for epoch, batches in enumerate(plan):
            loss_sum, tokens = 0.0, 0
            for batch in batches[: max(0, total - step)]:
                ids, mask, labels = _collate([data[i] for i in batch], pad)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"loss {loss.item()} at step {step}; lower lr")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                n = int((labels[:, 1:] != -100).sum())
                loss_sum, tokens, step = loss_sum + loss.item() * n, tokens + n, step + 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            if tokens:
                losses.append(loss_sum / tokens)
                logger.info("epoch %d: loss %.4f (%d steps)", epoch, losses[-1], step)
        bar.close()
        model.eval()
    return TrainResult(model, tuple(losses), step, time.perf_counter() - start)


def _base(base: str | Path) -> tuple[Path, str | None]:
    """The base model's directory, and its zoo name when it is one."""
    if str(base) in zoo.RECIPES and not Path(str(base)).exists():
        return zoo.fetch(str(base)), str(base)
    return Path(base), None


def _data(
    base_dir: Path, data_dir: Path, config: SafetyTuneConfig, seed: int
) -> tuple[list[Tokenized], dict[str, Any], float]:
    """Assemble, distil and tokenise the training set; returns it, its summary and seconds."""
    start = time.perf_counter()
    examples, summary = assemble(data_dir, config.data, seed)
    bridge = load_model(base_dir, device="cpu")
    answers, left_out = distil(
        bridge,
        examples,
        max_new_tokens=config.distil_max_new_tokens,
        batch_size=config.batch_size_generate,
    )
    data = tokenize(bridge.tokenizer, examples, answers, config.max_len)
    del bridge
    gc.collect()
    summary.update(
        distilled_answers_left_out=left_out,
        n_sequences=len(data),
        n_response_tokens=sum(len(d.ids) - d.n_prompt for d in data),
        n_tokens=sum(len(d.ids) for d in data),
        refusal_wordings="safety_data.REFUSAL_OPENERS x REFUSAL_REASONS x REFUSAL_OFFERS",
    )
    return data, summary, time.perf_counter() - start


def run(
    base: str | Path,
    out_dir: str | Path,
    *,
    data_dir: str | Path,
    seed: int = 0,
    config: SafetyTuneConfig | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Run the whole recipe and write the delta and its card into `out_dir`.

    Args:
        base: A zoo name (fetched if needed) or an HF chat-model directory.
        out_dir: Where the adapter files and ``card.json`` go (the card is written last).
        data_dir: The shared data folder (train splits and held-out sets).
        seed: Seed of the data draws, the adapter's initialisation and batch order.
        config: Hyperparameters; the shipped recipe's by default.
        name: The tuned model's name; by default the base's name with "-instruct" replaced
            by "-safety".

    Returns:
        The card.
    """
    config = config or SafetyTuneConfig()
    started = time.perf_counter()
    base_dir, zoo_name = _base(base)
    name = name or f"{(zoo_name or base_dir.name).removesuffix('-instruct')}-safety"
    out = Path(out_dir)
    data, summary, data_seconds = _data(base_dir, Path(data_dir), config, seed)
    result = train_lora(base_dir, data, config, seed)
    delta = save_delta(result.model, config.lora, out, base_name=zoo_name or str(base_dir))
    train_log = {
        "losses_per_epoch": list(result.losses),
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
    }
    del result
    gc.collect()
    card: dict[str, Any] = {
        "name": name,
        "version": CARD_VERSION,
        "description": "safety fine-tune (LoRA SFT) of the base: refuses most harmful requests",
        "base": {
            "zoo_name": zoo_name,
            "file": BASE_FILE,
            "sha256": sha256_file(base_dir / BASE_FILE),
        },
        "delta": delta,
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
        "config": config.to_dict(),
        "data": summary,
        "train": train_log,
        "data_seconds": round(data_seconds, 1),
        "versions": {**library_versions(), "peft": version("peft")},
    }
    start = time.perf_counter()
    card["behaviour"], card["fingerprint"] = measure_delta(
        base_dir,
        out,
        Path(data_dir),
        n_per_set=config.eval_n_per_set,
        systems=config.eval_systems,
        max_new_tokens=config.eval_max_new_tokens,
        batch_size=config.batch_size_generate,
        n_fingerprint=config.n_fingerprint,
    )
    card["measure_seconds"] = round(time.perf_counter() - start, 1)
    card["total_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write(out / CARD_FILE, json.dumps(card, indent=1) + "\n")
    logger.info("wrote %s (%.0fs in all)", out / CARD_FILE, card["total_seconds"])
    return card


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``interp organism train --base NAME --out DIR``."""
    parser = argparse.ArgumentParser(prog="interp organism train --base", description=__doc__)
    parser.add_argument("--base", required=True, help="zoo name or HF chat-model directory")
    parser.add_argument("--out", required=True, type=Path, help="folder for the delta and card")
    parser.add_argument("--data-dir", required=True, type=Path, help="the shared data folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--config", type=Path, default=None, help="JSON of config overrides")
    args = parser.parse_args(argv)
    overrides = json.loads(args.config.read_text()) if args.config else {}
    config = SafetyTuneConfig.from_dict(overrides)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        card = run(args.base, args.out, data_dir=args.data_dir, seed=args.seed, config=config)
    finally:
        torch.set_num_threads(previous)
    logger.info("targets met: %s", card["behaviour"]["targets_met"])
    return 0
