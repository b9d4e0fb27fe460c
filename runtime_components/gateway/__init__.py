"""The LLM-aware gateway: an Envoy ext_proc server that parses OpenAI requests, applies
API keys and rate limits, picks an engine pod with a routing policy (``policy/``) and counts
usage from responses. Discovery (Kubernetes or a static file) and metric scraping keep the
per-endpoint state the policies read. Entry point: ``aibrix-gateway`` (``cli.main``).

Importing this package is cheap; grpc, kubernetes and redis load only in the modules that use them.
"""
