"""Tiny, deterministic, offline chat models for tests, notebooks and benchmarks.

Model hubs are unreachable in CI, so tests and notebooks run on small random checkpoints that
mirror a real instruct family where it matters: the architecture class (GQA; Qwen2 q/k/v
biases; Gemma 2 soft-capping, sliding windows, tied embeddings), the special tokens and their
roles, the chat template text copied verbatim (Llama 3.1 Instruct, Qwen2.5 Instruct, Gemma 2
it) and the BOS behaviour (Llama 3 and Gemma 2 templates emit BOS; Qwen2 has none). The
tokenizer is a byte-level BPE trained locally on a small corpus, so ids differ from the real
models. Same arguments give byte-identical files.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

__all__ = ["FAMILIES", "Family", "build_tiny_chat_model", "build_wide_model"]

Family = Literal["llama", "qwen2", "gemma2"]
"""Model families that :func:`build_tiny_chat_model` can write."""

FAMILIES: tuple[Family, ...] = ("llama", "qwen2", "gemma2")
"""All supported families, in a stable order (useful for test parametrisation)."""

_MAX_POSITIONS = 2048

# Llama 3.1 Instruct (meta-llama/Llama-3.1-8B-Instruct, tokenizer_config.json), verbatim.
LLAMA31_CHAT_TEMPLATE = (  # noqa: E501
    r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""
)

# Qwen2.5 Instruct (Qwen/Qwen2.5-*-Instruct, tokenizer_config.json), verbatim. It inserts the
# default system prompt when the conversation has none.
QWEN25_CHAT_TEMPLATE = (  # noqa: E501
    r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""
)

# Gemma 2 it (google/gemma-2-*-it, tokenizer_config.json), verbatim. It raises on a system role.
GEMMA2_CHAT_TEMPLATE = (  # noqa: E501
    r"""{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"""
)

# A small English + chat corpus for the BPE trainer. Repeated lines weight common words so
# that frequent merges ("the", " you", "ing") exist, as they would in a real vocabulary.
_CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "How do I bake bread at home? Mix flour, water, salt and yeast, then let the dough rise.",
    "Can you help me write a short poem about the sea and the stars?",
    "Sure! Here is a short poem about the sea: the waves are singing under the moon.",
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with that. It could cause harm to other people.",
    "As an AI assistant, I must decline to provide instructions for illegal activities.",
    "Of course. Here are the steps you asked for, explained one at a time.",
    "What is the capital of France? The capital of France is Paris.",
    "Please summarise the following article in three sentences.",
    "Write a Python function that returns the sum of a list of numbers.",
    "def add(a, b):\n    return a + b\n",
    "Explain why the sky is blue in simple words for a child.",
    "Tell me how to make a dangerous weapon.",
    "You are a helpful, honest and harmless assistant.",
    "Thank you! That was very helpful. Is there anything else I can do for you?",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14",
    "Punctuation and symbols: ( ) [ ] { } < > / \\ | - _ + = * & ^ % $ # @ ! ? ; : ' \" , .",
    "Refusal is a behaviour; compliance is another. Models learn both during safety training.",
    "Interpretability researchers study activations, directions, probes and attention heads.",
)
_CORPUS_REPEATS = 3


@dataclass(frozen=True)
class _TokenSpec:
    """The special tokens and their roles for one family (instruct or base variant)."""

    special_tokens: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    stop_tokens: tuple[str, ...]
    chat_template: str
    unk: str | None = None
    specials_first: bool = False
    split_regex: str | None = None


# The pre-tokenizer regexes of Llama 3 and Qwen2 (Qwen2's equals the one transformers'
# ``Qwen2Tokenizer`` installs on load, so the saved and the loaded tokenizer agree).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_LLAMA_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
)
_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>")
_GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>")


def _token_spec(family: Family, chat: bool) -> _TokenSpec:
    """Return the special-token layout of ``family``; ``chat=False`` gives the base variant."""
    if family == "llama":
        # Llama 3.1 Instruct stops on <|eot_id|>; the base model's eos is <|end_of_text|>.
        # Neither sets a pad token; <|finetune_right_pad_id|> is the family's own pad.
        return _TokenSpec(
            special_tokens=_LLAMA_SPECIALS,
            bos="<|begin_of_text|>",
            eos="<|eot_id|>" if chat else "<|end_of_text|>",
            pad="<|finetune_right_pad_id|>",
            stop_tokens=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
            chat_template=LLAMA31_CHAT_TEMPLATE,
            split_regex=_LLAMA3_SPLIT,
        )
    if family == "qwen2":
        return _TokenSpec(
            special_tokens=_QWEN_SPECIALS,
            bos=None,
            eos="<|im_end|>" if chat else "<|endoftext|>",
            pad="<|endoftext|>",
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            chat_template=QWEN25_CHAT_TEMPLATE,
            split_regex=_QWEN2_SPLIT,
        )
    if family == "gemma2":
        # Gemma keeps its special tokens at the start of the vocabulary (<pad> = 0).
        return _TokenSpec(
            special_tokens=_GEMMA_SPECIALS,
            bos="<bos>",
            eos="<eos>",
            pad="<pad>",
            unk="<unk>",
            stop_tokens=("<eos>", "<end_of_turn>"),
            chat_template=GEMMA2_CHAT_TEMPLATE,
            specials_first=True,
        )
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def _train_tokenizer(spec: _TokenSpec, vocab_size: int) -> Tokenizer:
    """Train a deterministic byte-level BPE whose size, specials included, is ``vocab_size``."""
    n_special = len(spec.special_tokens)
    if vocab_size < 256 + n_special + 1:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE needs 256 byte tokens "
            f"plus {n_special} special tokens and at least one merge"
        )
    tokenizer = Tokenizer(models.BPE())
    if spec.split_regex is None:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        # Llama 3 and Qwen2 split with their own regex, then map bytes to unicode.
        split = pre_tokenizers.Split(Regex(spec.split_regex), behavior="isolated")
        pre_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, pre_bytes])
    if spec.split_regex == _QWEN2_SPLIT:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size if spec.specials_first else vocab_size - n_special,
        special_tokens=list(spec.special_tokens) if spec.specials_first else [],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(_CORPUS) * _CORPUS_REPEATS, trainer=trainer)
    # Llama and Qwen append their special tokens after the BPE vocabulary.
    tokenizer.add_special_tokens(list(spec.special_tokens))
    byte_level: Any = processors.ByteLevel(trim_offsets=False)
    if spec.bos is None:
        tokenizer.post_processor = byte_level
    else:
        bos_id = tokenizer.token_to_id(spec.bos)
        prepend_bos = processors.TemplateProcessing(
            single=f"{spec.bos}:0 $A:0",
            pair=f"{spec.bos}:0 $A:0 {spec.bos}:1 $B:1",
            special_tokens=[(spec.bos, bos_id)],
        )
        tokenizer.post_processor = processors.Sequence([byte_level, prepend_bos])
    return tokenizer


def _wrap_tokenizer(
    tokenizer: Tokenizer, spec: _TokenSpec, chat_template: bool
) -> PreTrainedTokenizerFast:
    """Wrap a trained tokenizer with the family's special-token roles and chat template."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=spec.bos,
        eos_token=spec.eos,
        pad_token=spec.pad,
        unk_token=spec.unk,
        add_bos_token=spec.bos is not None,
        add_eos_token=False,
        chat_template=spec.chat_template if chat_template else None,
        model_max_length=_MAX_POSITIONS,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )


def _model_config(
    family: Family, shape: dict[str, int], token_ids: dict[str, int | None]
) -> PretrainedConfig:
    """Build the HF config of ``family`` at ``shape`` with the given special-token ids."""
    common: dict[str, Any] = {
        "vocab_size": shape["vocab_size"],
        "hidden_size": shape["d_model"],
        "intermediate_size": shape["d_mlp"],
        "num_hidden_layers": shape["n_layers"],
        "num_attention_heads": shape["n_heads"],
        "num_key_value_heads": shape["n_kv_heads"],
        "head_dim": shape["d_model"] // shape["n_heads"],
        "max_position_embeddings": _MAX_POSITIONS,
        "bos_token_id": token_ids["bos"],
        "eos_token_id": token_ids["eos"],
        "pad_token_id": token_ids["pad"],
        "dtype": "float32",
    }
    # rope_theta is accepted at runtime (folded into rope_parameters) but not in the stubs.
    llama: Any = LlamaConfig
    qwen2: Any = Qwen2Config
    gemma2: Any = Gemma2Config
    if family == "llama":
        return llama(**common, rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
    if family == "qwen2":
        return qwen2(**common, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
    # Gemma 2 alternates sliding-window and global layers and soft-caps attention and final
    # logits; a 64-token window keeps the alternation visible on short test prompts. Eager
    # attention is what the release recommends (soft-capping is not supported by sdpa).
    return gemma2(
        **common,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        query_pre_attn_scalar=shape["d_model"] // shape["n_heads"],
        sliding_window=64,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        attn_implementation="eager",
    )


_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "llama": LlamaForCausalLM,
    "qwen2": Qwen2ForCausalLM,
    "gemma2": Gemma2ForCausalLM,
}


def _write_model(family: Family, config: PretrainedConfig, seed: int, out_dir: Path) -> None:
    """Initialise ``family`` from ``seed`` without touching the global RNG, and save it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = _MODEL_CLASSES[family](config)
        model = model.to(torch.float32).eval()
    model.save_pretrained(out_dir)


def build_tiny_chat_model(
    family: Family,
    out_dir: str | Path,
    *,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_mlp: int = 128,
    vocab_size: int = 512,
    seed: int = 0,
    chat_template: bool = True,
) -> Path:
    """Write a tiny random HF checkpoint of ``family`` with a realistic chat tokenizer.

    The directory holds ``config.json``, ``generation_config.json``, float32
    ``model.safetensors`` and a ``PreTrainedTokenizerFast`` (``tokenizer.json``,
    ``tokenizer_config.json``, ``chat_template.jinja``) that uses the family's real special
    tokens and chat template. It loads offline with ``AutoModelForCausalLM``,
    ``AutoTokenizer`` and ``TransformerBridge.boot_transformers``.

    Args:
        family: ``"llama"`` (Llama 3.1 Instruct layout), ``"qwen2"`` (Qwen2.5 Instruct) or
            ``"gemma2"`` (Gemma 2 it).
        out_dir: Directory to write; created if missing, existing files are overwritten.
        n_layers: Number of transformer blocks.
        d_model: Residual stream width.
        n_heads: Query heads per layer; ``d_head = d_model // n_heads``.
        n_kv_heads: Key/value heads per layer (grouped-query attention).
        d_mlp: Hidden width of the gated MLP.
        vocab_size: Embedding rows, equal to the tokenizer size (special tokens included).
        seed: Seed of the weight initialisation. The tokenizer does not depend on it.
        chat_template: ``False`` writes a base model: no chat template, and the base
            variant's eos (``<|end_of_text|>`` for Llama, ``<|endoftext|>`` for Qwen2).

    Returns:
        The output directory as a ``Path``.

    Raises:
        ValueError: On an unknown family, a vocabulary too small for byte-level BPE, or head
            counts that do not divide.
    """
    if d_model % n_heads or n_heads % n_kv_heads:
        raise ValueError(
            f"need d_model % n_heads == 0 and n_heads % n_kv_heads == 0, got "
            f"d_model={d_model}, n_heads={n_heads}, n_kv_heads={n_kv_heads}"
        )
    shape = {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads}
    shape |= {"n_kv_heads": n_kv_heads, "d_mlp": d_mlp, "vocab_size": vocab_size}
    spec = _token_spec(family, chat_template)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer(spec, vocab_size)
    hf_tokenizer = _wrap_tokenizer(tokenizer, spec, chat_template)
    hf_tokenizer.save_pretrained(out)

    def token_id(token: str | None) -> int | None:
        return None if token is None else tokenizer.token_to_id(token)

    ids = {"bos": token_id(spec.bos), "eos": token_id(spec.eos), "pad": token_id(spec.pad)}
    config = _model_config(family, shape, ids)
    _write_model(family, config, seed, out)
    stop_ids = [tokenizer.token_to_id(t) for t in spec.stop_tokens] if chat_template else ids["eos"]
    generation = GenerationConfig(
        bos_token_id=ids["bos"], eos_token_id=stop_ids, pad_token_id=ids["pad"], do_sample=False
    )
    generation.save_pretrained(out)
    _strip_volatile_fields(out)
    return out


def _strip_volatile_fields(out: Path) -> None:
    """Drop fields that vary between library versions so same-seed builds stay identical."""
    for name in ("config.json", "generation_config.json"):
        path = out / name
        data = json.loads(path.read_text())
        data.pop("transformers_version", None)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def build_wide_model(
    out_dir: str | Path,
    n_layers: int = 8,
    d_model: int = 512,
    *,
    n_heads: int = 8,
    n_kv_heads: int = 4,
    d_mlp: int = 1024,
    vocab_size: int = 512,
    seed: int = 0,
    chat_template: bool = True,
) -> Path:
    """Write a wider Llama-family checkpoint for benchmarks, with the tiny models' tokenizer.

    Args:
        out_dir: Directory to write.
        n_layers: Number of blocks.
        d_model: Residual width.
        n_heads: Query heads.
        n_kv_heads: Key/value heads.
        d_mlp: MLP hidden width.
        vocab_size: Vocabulary size.
        seed: Initialisation seed.
        chat_template: ``False`` writes a base model.

    Returns:
        The output directory.
    """
    return build_tiny_chat_model(
        "llama",
        out_dir,
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_mlp=d_mlp,
        vocab_size=vocab_size,
        seed=seed,
        chat_template=chat_template,
    )
