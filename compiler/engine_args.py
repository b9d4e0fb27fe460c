"""Engine command lines derived from a model's spec (used by the plan pass).

One table per engine maps spec fields to flags. vLLM (``python3 -m
vllm.entrypoints.openai.api_server``, which every vLLM image ships)::

    --model <weights> --served-model-name <name> --host 0.0.0.0 --port <port>
    --tensor-parallel-size T --pipeline-parallel-size P --gpu-memory-utilization U --dtype D
    [--max-model-len L] [--enable-prefix-caching | --no-enable-prefix-caching]
    [--enable-lora --max-loras N --max-lora-rank R]   (when the model has adapters)
    then engine.args in order: fooBar: v -> --foo-bar v; true -> --foo-bar; false -> --no-foo-bar

SGLang (``python3 -m sglang.launch_server``) always gets --enable-metrics (its /metrics is off
by default, and the gateway and scaler read it) and uses --model-path, --tp-size, --pp-size,
--context-length, --mem-fraction-static, --disable-radix-cache and --enable-lora/--max-loras-per-batch.
Flags in :data:`DERIVED_ARGS` come from typed fields; writing them in engine.args is an
error that names the field to use instead. A vLLM model with ``kvCache.enabled`` also gets
the pool's connector flags (``--block-size``, ``--kv-transfer-config``), so for it the keys
of :data:`KV_POOL_DERIVED_ARGS` are refused too; without the pool a user may set them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DERIVED_ARGS",
    "ENGINE_PRIORITY_ARG",
    "KV_POOL_DERIVED_ARGS",
    "PD_DERIVED_ARGS",
    "PD_TRANSFERS",
    "EngineCommand",
    "arg_flag",
    "derived_args",
    "engine_command",
    "weights_location",
]

#: engine.args keys the compiler derives, per engine, and the spec field that sets each.
DERIVED_ARGS: dict[str, dict[str, str]] = {
    "vllm": {
        "model": "source.uri",
        "servedModelName": "servedModelName",
        "host": "(fixed: 0.0.0.0)",
        "port": "engine.port",
        "tensorParallelSize": "parallelism.tensor",
        "pipelineParallelSize": "parallelism.pipeline",
        "maxModelLen": "engine.maxModelLen",
        "enablePrefixCaching": "engine.prefixCaching",
        "gpuMemoryUtilization": "engine.gpuMemoryUtilization",
        "dtype": "engine.dtype",
        "enableLora": "adapters",
        "maxLoras": "lora.maxLoras",
        "maxLoraRank": "lora.maxRank",
    },
    "sglang": {
        "modelPath": "source.uri",
        "enableMetrics": "(always on: the gateway and the scaler read /metrics)",
        "servedModelName": "servedModelName",
        "host": "(fixed: 0.0.0.0)",
        "port": "engine.port",
        "tpSize": "parallelism.tensor",
        "ppSize": "parallelism.pipeline",
        "contextLength": "engine.maxModelLen",
        "disableRadixCache": "engine.prefixCaching",
        "memFractionStatic": "engine.gpuMemoryUtilization",
        "dtype": "engine.dtype",
        "enableLora": "adapters",
        "maxLorasPerBatch": "lora.maxLoras",
        "maxLoraRank": "lora.maxRank",
    },
}

#: engine.args keys derived for a vLLM model that uses the shared KV-cache pool -> the hint.
KV_POOL_DERIVED_ARGS: dict[str, str] = {
    "blockSize": "set spec.kvCache.blockSizeTokens instead: every engine sharing the pool uses its block size",
    "kvTransferConfig": "remove it (kvCache.enabled loads the pool's connector), or set kvCache.enabled: false to use your own",
}


#: engine.args key set for a vLLM model when the gateway orders its queue (flow control's engine side).
ENGINE_PRIORITY_ARG = "schedulingPolicy"

#: The KV transfers of prefill/decode disaggregation each engine runs, in its own names: vLLM's
#: NixlConnector (``nixl``) or the project's pool connector (``kv-pool``); SGLang's
#: ``--disaggregation-transfer-backend`` values ``mooncake`` and ``nixl``.
PD_TRANSFERS: dict[str, tuple[str, ...]] = {"vllm": ("nixl", "kv-pool"), "sglang": ("mooncake", "nixl")}

#: engine.args keys a disaggregated model's roles get from ``disaggregation`` -> the hint.
PD_DERIVED_ARGS: dict[str, dict[str, str]] = {
    "vllm": {
        "kvTransferConfig": "remove it: disaggregation.transfer loads the KV connector of each role",
    },
    "sglang": {
        "disaggregationMode": "remove it: each role's pods get prefill or decode",
        "disaggregationTransferBackend": "set disaggregation.transfer instead",
        "disaggregationBootstrapPort": "remove it: the prefill pods' bootstrap port is fixed by the compiler (8998)",
    },
}


def derived_args(engine: str, *, uses_kv_pool: bool, transfer: str | None = None,
                 uses_engine_priority: bool = False) -> dict[str, str]:
    """engine.args keys the compiler sets for this model -> a hint saying what to write instead;
    ``transfer`` is the model's disaggregation transfer, when it is disaggregated."""
    derived = {key: f"set {field} instead" for key, field in DERIVED_ARGS[engine].items()}
    if (uses_kv_pool or transfer == "kv-pool") and engine == "vllm":
        derived.update(KV_POOL_DERIVED_ARGS)
    if uses_engine_priority and engine == "vllm":
        derived[ENGINE_PRIORITY_ARG] = ("flow control sets --scheduling-policy priority (the gateway sends each request's "
                                        "priority); set gateway.flowControl.enginePriority: false to choose your own")
    if transfer is not None:
        derived.update(PD_DERIVED_ARGS[engine])
    return derived


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")

#: Where the engine reads weights that are not on the Hugging Face hub: the model volume.
MODEL_MOUNT = "/models"


def arg_flag(key: str) -> str:
    """``maxNumSeqs`` -> ``--max-num-seqs``."""
    return "--" + _CAMEL.sub("-", key).lower()


def weights_location(uri: str) -> str:
    """What the engine's model flag gets: a hub id for hf://, a path under the mount for pvc://.

    >>> weights_location("hf://Qwen/Qwen2.5-0.5B-Instruct"), weights_location("pvc://models/llama/8b")
    ('Qwen/Qwen2.5-0.5B-Instruct', '/models/llama/8b')
    """
    if uri.startswith("hf://"):
        return uri.removeprefix("hf://")
    if uri.startswith("pvc://"):
        _claim, _, sub = uri.removeprefix("pvc://").partition("/")
        return f"{MODEL_MOUNT}/{sub}".rstrip("/")
    return f"{MODEL_MOUNT}/weights"


@dataclass(frozen=True)
class EngineCommand:
    """Container command and args (lists of strings, ready for a pod spec)."""

    command: tuple[str, ...]
    args: tuple[str, ...]


def _extra(args: dict[str, str | int | float | bool]) -> list[str]:
    out: list[str] = []
    for key, value in args.items():
        flag = arg_flag(key)
        if value is True:
            out.append(flag)
        elif value is False:
            out.append("--no-" + flag.removeprefix("--"))
        else:
            out += [flag, str(value)]
    return out


def engine_command(
    *,
    engine: str,
    uri: str,
    served_name: str,
    port: int,
    tensor: int,
    pipeline: int,
    max_model_len: int | None,
    prefix_caching: bool,
    gpu_memory_utilization: float,
    dtype: str,
    lora: tuple[int, int] | None,
    extra: dict[str, str | int | float | bool],
    model: str | None = None,
    load_format: str | None = None,
) -> EngineCommand:
    """The engine's command line; ``lora`` is (max loras, max rank) when adapters exist;
    ``model`` overrides where the weights are read (a download destination, a streamed URI)
    and ``load_format`` sets vLLM's ``--load-format``."""
    model = model or weights_location(uri)
    if engine == "vllm":
        args = ["--model", model, "--served-model-name", served_name, "--host", "0.0.0.0", "--port", str(port)]
        if load_format is not None:
            args += ["--load-format", load_format]
        args += ["--tensor-parallel-size", str(tensor), "--pipeline-parallel-size", str(pipeline)]
        args += ["--gpu-memory-utilization", f"{gpu_memory_utilization:g}", "--dtype", dtype]
        if max_model_len is not None:
            args += ["--max-model-len", str(max_model_len)]
        args.append("--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching")
        if lora is not None:
            args += ["--enable-lora", "--max-loras", str(lora[0]), "--max-lora-rank", str(lora[1])]
        return EngineCommand(("python3", "-m", "vllm.entrypoints.openai.api_server"), tuple(args + _extra(extra)))
    # SGLang serves /metrics only with --enable-metrics; the gateway and the scaler read them.
    args = [
        "--model-path",
        model,
        "--served-model-name",
        served_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--enable-metrics",
    ]
    args += ["--tp-size", str(tensor), "--pp-size", str(pipeline)]
    args += ["--mem-fraction-static", f"{gpu_memory_utilization:g}", "--dtype", dtype]
    if max_model_len is not None:
        args += ["--context-length", str(max_model_len)]
    if not prefix_caching:
        args.append("--disable-radix-cache")
    if lora is not None:
        args += ["--enable-lora", "--max-loras-per-batch", str(lora[0]), "--max-lora-rank", str(lora[1])]
    return EngineCommand(("python3", "-m", "sglang.launch_server"), tuple(args + _extra(extra)))
