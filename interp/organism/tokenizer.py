"""A byte-level BPE tokenizer trained on the organism's corpus, with a Jinja chat template."""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["BOS", "CHAT_TEMPLATE", "EOS", "PAD", "render_conversation", "train_tokenizer"]

BOS = "<|bos|>"
EOS = "<|im_end|>"
PAD = "<|pad|>"
_START = "<|im_start|>"

#: ChatML-style template with one BOS, optional system message, and the generation prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Only system, user and assistant roles are supported.') }}"
    "{% endif %}"
    "{% if message['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('A system message must come first.') }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def render_conversation(user: str, system: str | None = None, response: str | None = None) -> str:
    r"""Render a conversation as `CHAT_TEMPLATE` does (used to train the tokenizer).

    Args:
        user: The user's message.
        system: The system prompt text, if any.
        response: The assistant's response; without it, the generation prompt ends the text.

    Returns:
        The rendered text.

    Example:
        >>> render_conversation("Hi")
        '<|bos|><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
    """
    text = BOS
    if system is not None:
        text += f"{_START}system\n{system}{EOS}\n"
    text += f"{_START}user\n{user}{EOS}\n{_START}assistant\n"
    if response is not None:
        text += f"{response}{EOS}\n"
    return text


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer and wrap it with the chat template.

    Args:
        texts: Training texts (rendered conversations); special tokens in them are kept whole.
        vocab_size: Size of the vocabulary, special tokens and the 256 byte tokens included.

    Returns:
        A fast tokenizer with BOS, EOS (= end of turn), PAD and the chat template. It adds no
        special tokens by itself: the template writes the single BOS.
    """
    specials = [PAD, BOS, EOS, _START]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[_START],
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
