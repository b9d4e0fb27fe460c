"""``spec.gpuPools[]``: the GPU node pools a cluster offers.

A pool names either a catalogue accelerator (:mod:`aibrix_spec.catalog`, which supplies
the node-label product, device memory and a default price) or describes the GPU with
explicit fields. ``costPerGpuHour`` feeds the optimizer and ``aibrix-compile explain``
(cost per replica-hour = gpusPerReplica x costPerGpuHour).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from ._base import SpecModel
from ._types import DnsLabel, LabelKey, LabelValue, ResourceName, spec_error
from .catalog import ACCELERATORS

__all__ = ["GpuPool", "Toleration"]


class Toleration(SpecModel):
    """A Kubernetes toleration added to the pods placed on this pool."""

    key: LabelKey | None = Field(None, description="Taint key to tolerate; empty with operator Exists tolerates all.")
    operator: Literal["Exists", "Equal"] = Field("Exists", description="Exists or Equal.")
    value: LabelValue | None = Field(None, description="Taint value, with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; empty tolerates every effect."
    )


class GpuPool(SpecModel):
    """One homogeneous pool of GPU nodes."""

    name: DnsLabel = Field(description="Pool name, referenced by models[].placement.pools.")
    accelerator: str | None = Field(
        None,
        description=(
            "A catalogue accelerator (" + ", ".join(sorted(ACCELERATORS)) + "); "
            "leave empty and set product and memoryGib to describe another GPU."
        ),
    )
    product: Annotated[LabelValue, Field(min_length=1)] | None = Field(
        None, description="Value of the nvidia.com/gpu.product node label; defaults from the catalogue."
    )
    memory_gib: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Device memory per GPU in GiB; defaults from the catalogue."
    )
    cost_per_gpu_hour: Annotated[float, Field(ge=0)] | None = Field(
        None, description="USD per GPU-hour; defaults to the catalogue's typical on-demand price."
    )
    resource_name: ResourceName = Field(
        "nvidia.com/gpu", description="Extended resource a pod requests for one GPU."
    )
    runtime_class_name: DnsLabel | None = Field(
        None, description="RuntimeClass of GPU pods (e.g. nvidia) when the node's default runtime is not NVIDIA's."
    )
    gpus_per_node: Annotated[int, Field(ge=1, le=64)] = Field(8, description="GPUs on each node of the pool.")
    max_nodes: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Most nodes the pool can grow to (the optimizer's capacity bound); empty = unbounded."
    )
    node_selector: dict[str, str] | None = Field(
        None, description="Node labels pods of this pool require; defaults to {nvidia.com/gpu.product: <product>}."
    )
    tolerations: list[Toleration] | None = Field(
        None,
        description="Tolerations for the pool's taints; defaults to tolerating the nvidia.com/gpu taint.",
    )

    @field_validator("accelerator")
    @classmethod
    def _known_accelerator(cls, value: str | None) -> str | None:
        if value is not None and value not in ACCELERATORS:
            raise spec_error(
                f'unknown accelerator "{value}"',
                expected="a catalogue accelerator: " + ", ".join(sorted(ACCELERATORS)),
                got=value,
                choices=tuple(sorted(ACCELERATORS)),
                hint="or leave accelerator empty and set product, memoryGib and costPerGpuHour",
            )
        return value
