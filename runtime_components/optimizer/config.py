"""Loading the optimizer's config and the profiles it names.

Relative paths inside a config file (``profilesDir``, ``workload.file``) are resolved
against the config file's folder, so a ConfigMap mounted as a folder works as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aibrix_spec.components.optimizer import GpuProfile, OptimizerConfig, OptimizerModel
from runtime_components.optimizer.files import load_model
from runtime_components.optimizer.profiles import ProfileSet, load_profile_dir
from runtime_components.optimizer.solve import Deriver, resolve_profiles

__all__ = ["LoadedConfig", "load_config", "load_profiles_for"]


@dataclass(frozen=True)
class LoadedConfig:
    config: OptimizerConfig
    base_dir: Path

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


def load_config(path: str | Path) -> LoadedConfig:
    config = load_model(path, OptimizerConfig, what="optimizer config")
    return LoadedConfig(config, Path(path).resolve().parent)


def default_deriver(config: OptimizerConfig) -> Deriver:
    """The roofline deriver on the config's grid (imported lazily: it pulls in the simulated engine)."""
    from runtime_components.optimizer.derive import deriver_for

    return deriver_for(config.derive_input_buckets, config.derive_output_buckets, config.derive_request_tokens)


def load_profiles_for(
    loaded: LoadedConfig,
    extra_paths: list[str] | None = None,
    *,
    deriver: Deriver | None = None,
    on_derive: Callable[[str], None] | None = None,
) -> dict[tuple[str, str], GpuProfile]:
    """Profiles per (model, pool): files from ``profilesDir`` and ``extra_paths``, then derived.

    ``on_derive`` hears one line before each derivation (it can take minutes)."""
    paths: list[str | Path] = []
    if loaded.config.profiles_dir:
        paths.append(loaded.path(loaded.config.profiles_dir))
    paths.extend(extra_paths or [])
    profile_set = load_profile_dir(paths) if paths else ProfileSet()
    if deriver is None and loaded.config.derive_missing_profiles:
        deriver = default_deriver(loaded.config)
    if deriver is not None and on_derive is not None:
        inner = deriver

        def announced(model: OptimizerModel, accel: str) -> GpuProfile:
            assert on_derive is not None
            on_derive(f"deriving a roofline profile for {model.name} on {accel} "
                      f"({len(loaded.config.derive_input_buckets)} x {len(loaded.config.derive_output_buckets)} cells)")
            return inner(model, accel)

        deriver = announced
    return resolve_profiles(loaded.config, profile_set, deriver)
