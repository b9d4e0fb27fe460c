"""The SLO-driven GPU optimizer: profiles x observed workload -> an ILP (Melange formulation)
-> replicas per (model, pool), served as ``aibrix_optimizer_desired_replicas`` for the scaler.

Modules: ``errors`` (error types), ``files`` (reading JSON/YAML with clear errors),
``config`` (the config and the profiles it names), ``profiles`` (profile files and lookup),
``workload`` (workload files and the gateway histogram), ``problem`` (the ILP in matrix
form), ``backends`` (CBC through PuLP, HiGHS through highspy), ``solve`` (plans and
infeasibility reports), ``report`` (tables and JSON), ``search`` (the max-rate search and
how a probe is judged), ``derive`` (roofline profiles from the simulated engine),
``derive_command`` (the `derive` subcommand),
``profiler`` (measured profiles from any OpenAI endpoint), ``service`` (the periodic
re-solver), ``cli``. User guide: docs/optimizer.md.
"""
