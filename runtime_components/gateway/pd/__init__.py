"""Prefill/decode disaggregation in the gateway (docs/routing.md, "Prefill/decode").

``roles``: where prefill pods live in the endpoint table; ``bodies``: the request bodies of
a pair per engine protocol (vLLM NIXL or KV pool, SGLang bootstrap rooms); ``path``: the
prefill step ext_proc runs after a request of a disaggregated model is admitted.
"""

from .path import PdConfigError, PrefillDecode, PrefillFailed
from .roles import PREFILL_SUFFIX, prefill_pool, role_specs

__all__ = ["PREFILL_SUFFIX", "PdConfigError", "PrefillDecode", "PrefillFailed", "prefill_pool", "role_specs"]
