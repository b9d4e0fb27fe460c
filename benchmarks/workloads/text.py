"""Synthetic text with a known token count, and ShareGPT-like length distributions.

Where it sits: the workload generators build prompts from these words. Every word has at
most five letters, so with the project tokenizer (``runtime_components.common.tokens``:
one id per word of up to six characters including its leading space) ``n`` words are
exactly ``n`` tokens: ``count_tokens(words(n, rng)) == n``; a test pins it.

Lengths: ShareGPT conversations have log-normally distributed lengths with a long tail
(median user turn ~100-200 tokens, answers ~150-250). ``sharegpt_input_len`` draws
``exp(N(ln 150, 1.0))`` clipped to [4, 4000]; ``sharegpt_output_len`` draws
``exp(N(ln 180, 0.8))`` clipped to [4, 1024]. Synthetic, not sampled from the dataset.
"""

from __future__ import annotations

import math
import random

__all__ = ["WORDS", "words", "sharegpt_input_len", "sharegpt_output_len", "lognormal_len"]

WORDS: tuple[str, ...] = tuple(
    """the of and to in is was he for it with as his on be at by had are but from or have an
    they which one you were her all she there would their we him been has when who will more
    no if out so said what up its about into than them can only other new some could time
    these two may then do first any my now such like our over man me even most made after
    also did many must where much your way well down shall great year just each those how
    too here both years being world still own never under last might while city state house
    water small large table join order group count rows where value index user query data
    sales price item store date total level model token cache route batch score shard node
    graph edge path field label key list set map tree heap queue stack page block frame
    light sound voice story music field river ocean cloud storm green black white brown""".split()
)


def words(n: int, rng: random.Random) -> str:
    """``n`` random words (``n`` tokens), space separated."""
    return " ".join(rng.choice(WORDS) for _ in range(n))


def lognormal_len(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(math.exp(rng.gauss(math.log(median), sigma))))))


def sharegpt_input_len(rng: random.Random) -> int:
    return lognormal_len(rng, 150, 1.0, 4, 4000)


def sharegpt_output_len(rng: random.Random) -> int:
    return lognormal_len(rng, 180, 0.8, 4, 1024)
