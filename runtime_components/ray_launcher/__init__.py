"""Start a multi-node engine only when the whole Ray cluster has joined.

vLLM's Ray executor places its tensor/pipeline-parallel workers when it starts; started
before every worker pod has joined the head, it fails or packs workers wrongly. The
launcher, run in the head pod after ``ray start --head``, polls the cluster through the
``ray`` API until the expected number of GPUs is alive, then replaces itself with the
engine command.
"""
