"""LLM-aware autoscaler: HPA, KPA and APA algorithms, the controller that drives Kubernetes
scale subresources from engine or optimizer metrics, and a local scale target for runs
without a cluster. The pure algorithm code (`algorithms/`, `window.py`, `autoscaler.py`) is
shared by the controller and the trace simulator in `benchmarks/autoscaling.py`.
"""
