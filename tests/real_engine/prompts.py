"""Prompts in the tiny model's own vocabulary (``tiny_model.WORDS``): its locally trained
tokenizer makes each of these words exactly one token, so a prompt of N words is N real
tokens and block boundaries (128 tokens on vLLM's CPU backend) are predictable."""

from __future__ import annotations

import random

from .tiny_model import WORDS

__all__ = ["prompt_words", "WORDS"]


def prompt_words(rng: random.Random, count: int) -> list[str]:
    """``count`` words drawn from the tiny vocabulary with ``rng``."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [rng.choice(WORDS) for _ in range(count)]
