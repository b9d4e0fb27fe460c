"""The engine sidecar: keeps each engine's loaded LoRA adapters equal to its share of the
adapters the stack declares, with no central controller.

- ``placement``: which pods hold which adapter (capacity-bounded rendezvous hashing that
  every pod computes identically from the same ready-pod set).
- ``reconciler``: turns "should hold" into load/unload calls on the engine's runtime-LoRA API.
- ``engine_client``: the vLLM runtime-LoRA HTTP API.
- ``pods``: the ready-pod set, from the Kubernetes API or a static file.
"""
