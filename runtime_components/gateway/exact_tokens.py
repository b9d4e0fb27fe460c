"""The model's own tokenizer, for prefix hashes that match the engine's KV events.

The gateway normally tokenizes prompts approximately (``common.tokens``): enough for
decisions-mode prefix routing, where only the gateway's own hashes meet. In ``kv-events``
mode the index holds hashes of the *engine's* token ids, so a prompt matches only when the
gateway tokenizes exactly as the engine does. With ``models[].tokenizerFile`` (the model's
``tokenizer.json``; HF ``tokenizers`` package, extra ``tokenizer``), a completions prompt
(a string) is encoded as vLLM encodes it (special tokens added, e.g. BOS). Chat requests
keep the approximate ids: the engine renders them through the model's chat template first,
which this does not reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ExactTokenizer", "TokenizerFileError"]


class TokenizerFileError(ValueError):
    """The configured tokenizer cannot be loaded; the message says which file and why."""


class ExactTokenizer:
    """Encodes text with a ``tokenizer.json``."""

    def __init__(self, path: str, *, where: str = "tokenizerFile") -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise TokenizerFileError(f"{where} {path}: the exact tokenizer needs the `tokenizers` package; "
                                     "hint: pip install 'aibrix-stack[tokenizer]'") from None
        try:
            self._tokenizer: Any = Tokenizer.from_file(path)
        except Exception as exc:  # tokenizers raises its own Exception type for bad files
            raise TokenizerFileError(f"{where} {path}: not a tokenizer.json that the tokenizers package loads ({exc})") from None
        self.path = path

    def ids(self, text: str) -> Sequence[int]:
        """Token ids of a completions prompt, special tokens included, as vLLM encodes it."""
        return list(self._tokenizer.encode(text, add_special_tokens=True).ids)
