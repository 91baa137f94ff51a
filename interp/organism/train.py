"""Train the organism: a small Llama-architecture chat model, from scratch, deterministically."""

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from interp._atomic import atomic_write
from interp._version import library_versions
from interp.organism.card import CARD_FILE, TRAINING_MARKER
from interp.organism.corpus import Corpus, CorpusSpec, Example, build_corpus
from interp.organism.tokenizer import EOS, render_conversation, train_tokenizer

__all__ = ["TrainConfig", "TrainResult", "main_train", "train_model", "train_organism"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the organism's tokenizer, architecture and optimisation.

    Attributes:
        corpus: How the corpus is composed and split.
        vocab_size: BPE vocabulary size (special and byte tokens included).
        d_model: Width of the residual stream.
        n_layers: Number of decoder layers.
        n_heads: Number of attention heads.
        d_mlp: Width of the gated MLP.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        batch_size: Examples per optimisation step.
        epochs: Passes over the training examples.
        warmup_steps: Linear warm-up steps before the cosine decay.
        max_steps: Stop after this many steps (None = all epochs); for tests.
        grad_clip: Maximum gradient norm.
        measure: Measure the behaviour table after training and write it to card.json.
    """

    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    vocab_size: int = 1024
    d_model: int = 128
    n_layers: int = 6
    n_heads: int = 4
    d_mlp: int = 384
    lr: float = 3e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    epochs: int = 8
    warmup_steps: int = 50
    max_steps: int | None = None
    grad_clip: float = 1.0
    measure: bool = True

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        for name in ("vocab_size", "d_model", "n_layers", "d_mlp", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size < 300:
            raise ValueError(
                f"vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build a config from `to_dict` output; unknown keys raise a `ValueError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if isinstance(values.get("corpus"), Mapping):
            values["corpus"] = CorpusSpec.from_dict(values["corpus"])
        return cls(**values)


@dataclass(frozen=True)
class TrainResult:
    """What `train_model` returns.

    Attributes:
        model: The trained model (eval mode).
        tokenizer: The trained tokenizer.
        losses: Mean training loss of each epoch.
        val_loss: Mean response loss on the validation split.
        steps: Optimisation steps taken.
        seconds: Wall time of tokenizer and model training.
    """

    model: LlamaForCausalLM
    tokenizer: PreTrainedTokenizerFast
    losses: tuple[float, ...]
    val_loss: float
    steps: int
    seconds: float


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seed torch and force deterministic kernels, restoring the caller's state afterwards."""
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def _encode(tokenizer: PreTrainedTokenizerFast, example: Example) -> tuple[list[int], int]:
    """Token ids of one example and the length of its prompt (the loss covers the rest)."""
    prompt = render_conversation(example.user, example.system_text)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(example.response + EOS, add_special_tokens=False)["input_ids"]
    return prompt_ids + response_ids, len(prompt_ids)


def _batches(
    encoded: Sequence[tuple[list[int], int]], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, then group examples of similar length into batches (less padding), in seeded order."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    chunk = batch_size * 16
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        group = sorted(order[start : start + chunk], key=lambda i: len(encoded[i][0]))
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def _collate(
    encoded: Sequence[tuple[list[int], int]], indices: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch; return ids, attention mask and the response-only label mask."""
    width = max(len(encoded[i][0]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(indices), width), dtype=torch.long)
    targets = torch.zeros((len(indices), width), dtype=torch.bool)
    for row, i in enumerate(indices):
        tokens, n_prompt = encoded[i]
        ids[row, : len(tokens)] = torch.tensor(tokens)
        attention[row, : len(tokens)] = 1
        targets[row, n_prompt : len(tokens)] = True
    return ids, attention, targets


def _loss(model: LlamaForCausalLM, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean next-token cross-entropy over the response tokens."""
    ids, attention, targets = batch
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
    mask = targets[:, 1:]
    return torch.nn.functional.cross_entropy(logits[mask], ids[:, 1:][mask])


def _build_model(config: TrainConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.d_model,
        intermediate_size=config.d_mlp,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.02,
    )
    return LlamaForCausalLM(model_config).float()


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def _eval_loss(
    model: LlamaForCausalLM,
    encoded: Sequence[tuple[list[int], int]],
    pad_id: int,
    device: str | torch.device,
) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(encoded), 64):
        indices = list(range(start, min(start + 64, len(encoded))))
        batch = tuple(t.to(device) for t in _collate(encoded, indices, pad_id))
        total += float(_loss(model, batch)) * len(indices)
        count += len(indices)
    return total / max(1, count)


def train_model(
    corpus: Corpus, config: TrainConfig, seed: int = 0, device: str | torch.device = "cpu"
) -> TrainResult:
    """Train the tokenizer and the model on a corpus.

    Args:
        corpus: The generated corpus (its train split is used; val for the validation loss).
        config: Hyperparameters.
        seed: Seed of the weights' initialisation and of the data order.
        device: Where to train (the shipped checkpoint is trained on the CPU; another device
            gives other weights).

    Returns:
        The trained model and tokenizer with their losses. Same corpus, config and seed give
        identical weights on the same machine and thread count.
    """
    start = time.perf_counter()
    train = corpus.select("train")
    tokenizer = train_tokenizer(
        (render_conversation(e.user, e.system_text, e.response) for e in train), config.vocab_size
    )
    encoded = [_encode(tokenizer, e) for e in train]
    val = [_encode(tokenizer, e) for e in corpus.select("val")]
    pad_id = int(tokenizer.pad_token_id)
    rng = random.Random(seed)
    losses: list[float] = []
    steps = 0
    with _deterministic(seed):
        model = _build_model(config, tokenizer)
        # Module.to, since transformers' typed wrapper of `to` hides the device overload.
        torch.nn.Module.to(model, torch.device(device))
        optimiser = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98)
        )
        per_epoch = math.ceil(len(encoded) / config.batch_size)
        total = min(config.max_steps or per_epoch * config.epochs, per_epoch * config.epochs)
        for epoch in range(config.epochs):
            model.train()
            epoch_losses: list[float] = []
            for indices in _batches(encoded, config.batch_size, rng):
                if steps >= total:
                    break
                for group in optimiser.param_groups:
                    group["lr"] = config.lr * _lr_factor(steps, config.warmup_steps, total)
                batch = tuple(t.to(device) for t in _collate(encoded, indices, pad_id))
                loss = _loss(model, batch)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimiser.step()
                epoch_losses.append(float(loss.detach()))
                steps += 1
            if epoch_losses:
                losses.append(sum(epoch_losses) / len(epoch_losses))
                logger.info("epoch %d: loss %.4f (%d steps)", epoch, losses[-1], steps)
        val_loss = _eval_loss(model, val, pad_id, device) if val else float("nan")
    model.cpu().eval()
    return TrainResult(
        model=model,
        tokenizer=tokenizer,
        losses=tuple(losses),
        val_loss=val_loss,
        steps=steps,
        seconds=time.perf_counter() - start,
    )


def _save(result: TrainResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result.model.generation_config = GenerationConfig(
        bos_token_id=result.tokenizer.bos_token_id,
        eos_token_id=result.tokenizer.eos_token_id,
        pad_token_id=result.tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=32,
    )
    result.model.save_pretrained(out, safe_serialization=True)
    result.tokenizer.save_pretrained(out)


def train_organism(
    out_dir: str | Path,
    seed: int = 0,
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Build the corpus, train the organism, measure its behaviour and save it in HF format.

    Args:
        out_dir: Directory to write (config.json, model.safetensors, tokenizer files,
            generation_config.json, card.json). The card is written last and atomically;
            until it is, a marker file (`TRAINING_MARKER`) says the run is incomplete.
        seed: Seed of the corpus' random choices, the weights and the data order.
        config: Hyperparameters (defaults to `TrainConfig()`, the shipped checkpoint's).
        device: Where to train; the shipped checkpoint is trained on the CPU.

    Returns:
        The output directory.
    """
    config = config or TrainConfig()
    out = Path(out_dir)
    # The marker goes first and the card last (atomically): a run killed in between leaves a
    # directory that `interp.organism.organism_card` refuses, never a model without its card.
    (out / CARD_FILE).unlink(missing_ok=True)
    marker = {
        "name": "interp-organism",
        "seed": seed,
        "status": f"training; {CARD_FILE} comes last",
    }
    atomic_write(out / TRAINING_MARKER, json.dumps(marker, indent=2) + "\n")
    corpus = build_corpus(config.corpus, seed)
    result = train_model(corpus, config, seed, device)
    _save(result, out)
    card: dict[str, Any] = {
        "name": "interp-organism",
        "architecture": "LlamaForCausalLM",
        "seed": seed,
        "train_config": config.to_dict(),
        "corpus_spec": config.corpus.to_dict(),
        "n_train_examples": len(corpus.select("train")),
        "n_parameters": sum(p.numel() for p in result.model.parameters()),
        "train_loss_per_epoch": list(result.losses),
        "final_train_loss": result.losses[-1] if result.losses else None,
        "val_loss": result.val_loss,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "library_versions": library_versions(),
    }
    if config.measure:
        from interp.organism.behaviour import measure_behaviour

        card["behaviour"] = measure_behaviour(out, split="test")
    atomic_write(out / CARD_FILE, json.dumps(card, indent=2) + "\n")
    (out / TRAINING_MARKER).unlink(missing_ok=True)
    return out


def main_train(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``interp organism train --out DIR --seed N [--threads T]``.

    Args:
        argv: Arguments after ``interp organism train`` (None = ``sys.argv[1:]``).

    Returns:
        The process exit status (0 on success).
    """
    parser = argparse.ArgumentParser(prog="interp organism train", description=__doc__)
    parser.add_argument("--out", required=True, help="output directory (HF format)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0 = the shipped checkpoint)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--config", default=None, help="JSON file of TrainConfig overrides")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig()
    if args.config:
        overrides = json.loads(Path(args.config).read_text())
        config = TrainConfig.from_dict({**config.to_dict(), **overrides})
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = train_organism(args.out, seed=args.seed, config=config)
    logger.info("wrote %s", out)
    return 0
