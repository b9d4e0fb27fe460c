"""GPU diagnostics: NVML checks, the fault-file mock-up, the one-shot CLI and the periodic exporter.

Layout: `report` (statuses, results, exit codes) <- `checks_*` and `xid` (one job each, all
through the pynvml function surface) <- `session` (one pass over a node) <- `cli` / `daemon`
(`metrics`, `node_actions`). `fake_nvml` implements the same pynvml functions from a fault
file (`aibrix_spec.components.diag.FaultFile`), so every check runs unchanged without a GPU.
"""
