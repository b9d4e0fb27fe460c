"""Smoke-test built images the way Kubernetes runs them: ``python3 scripts/image_smoke.py TARGET=REF...``.

Called by ``bash scripts/build-images --test`` (as root, on the machine that built the images).
For each image it checks the image config (user, entrypoint, OCI labels, version tag), then
runs commands inside the image's own root filesystem:

- every console script answers ``--help`` as UID 65532 (``buildah run --isolation chroot``);
- each long-running server starts as **PID 1** of its own PID, mount and network namespace,
  as UID 65532, on a **read-only root filesystem** with nothing writable but what its pod
  mounts (``/dev/shm``), answers its health endpoint on loopback, then exits 0 after a
  SIGTERM sent from outside the namespace, as the kubelet does (PID 1 only receives signals
  it handles, so this proves the component handles SIGTERM itself);
- the kv-server image runs the compiled KV-connector init container (its command, taken from
  the compiled production example) into an emptyDir;
- the ArgoCD plugin image runs the plugin's ``generate`` command from its own plugin.yaml on
  examples/stacks/production.yaml as the repo-server sidecar does (UID 999, read-only root,
  an emptyDir on /tmp, ArgoCD's variables) and its output must equal ``aibrix-compile``'s.

Namespaces come from ``unshare``; a server is reached with ``nsenter --net``. Standard library
only (plus PyYAML, which the project needs anyway). Exit 0 when everything passed, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "stacks" / "production.yaml"
RUNTIME_USER = "65532:65532"
ARGOCD_USER = "999:999"
CONSOLE_SCRIPTS = (
    "aibrix-gateway", "aibrix-kv-server", "aibrix-scaler", "aibrix-optimize", "aibrix-diag",
    "aibrix-sidecar", "aibrix-ray-launcher", "aibrix-engine-sim", "aibrix-load", "aibrix-compile", "aibrix-runtime",
)
ENTRYPOINTS = {
    "gateway": "aibrix-gateway", "kv-server": "aibrix-kv-server", "scaler": "aibrix-scaler",
    "optimizer": "aibrix-optimize", "diag": "aibrix-diag", "sidecar": "aibrix-sidecar", "downloader": "aibrix-runtime",
}
LABELS = ("org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision")


@dataclass(frozen=True)
class Server:
    """One long-running component: its command line, config files and health URL."""

    argv: tuple[str, ...]
    health: str
    files: dict[str, str] = field(default_factory=dict)  # name under /etc/smoke -> content
    env: dict[str, str] = field(default_factory=dict)


# Static configs: no Kubernetes API, no engines, no Redis; ports are fixed (private network).
SERVERS = {
    "gateway": Server(
        ("aibrix-gateway", "--config", "/etc/smoke/gateway.yaml"),
        "http://127.0.0.1:8080/healthz",
        {
            "gateway.yaml": "listen: {host: 127.0.0.1, grpcPort: 50051, httpPort: 8080}\n"
            "discovery: {mode: static, endpointsFile: /etc/smoke/engines.json}\n"
            "models: [{name: smoke-model}]\n"
            # Tracing on: the gateway imports the OTLP exporter at start, which fails when
            # xds-protos' copy of OpenTelemetry's common.proto won (scripts/restore-otel-proto).
            # Nothing is exported: no request, no span.
            "tracing: {otlpEndpoint: 'http://127.0.0.1:4317'}\n",
            "engines.json": "[]\n",
        },
    ),
    "kv-server": Server(
        ("aibrix-kv-server", "--host", "127.0.0.1", "--port", "9600", "--metrics-port", "9601", "--capacity", "64Mi"),
        "http://127.0.0.1:9601/healthz",
    ),
    "scaler": Server(
        # Nothing listens on port 9: the controller keeps retrying the API while /healthz answers.
        ("aibrix-scaler", "run", "--config", "/etc/smoke/scaler.yaml", "--api-url", "http://127.0.0.1:9",
         "--metrics-port", "9090", "--identity", "smoke"),
        "http://127.0.0.1:9090/healthz",
        {
            "scaler.yaml": "targets:\n"
            "  - name: smoke\n"
            "    scaleTargetRef: {name: smoke, namespace: llm}\n"
            "    podSelector: {model.aibrix.ai/name: smoke}\n"
            "    metric: {name: 'vllm:num_requests_running', source: engine, aggregation: per-pod}\n"
            "    target: 10\n"
            "    maxReplicas: 4\n"
            "    policy: apa\n",
        },
    ),
    "optimizer": Server(
        ("aibrix-optimize", "serve", "--config", "/etc/smoke/optimizer.yaml", "--host", "127.0.0.1", "--port", "8080"),
        "http://127.0.0.1:8080/healthz",
        {
            "optimizer.yaml": "pools: [{name: l20, accelerator: nvidia-l20, costPerGpuHour: 1.1, maxGpus: 8}]\n"
            "models:\n"
            "  - {name: smoke, arch: llama-3-8b, pools: [l20], gpusPerReplica: 1, minReplicas: 1,\n"
            "     maxReplicas: 4, slo: {ttftP99Ms: 500, tpotP99Ms: 50}}\n"
            "workload: {gatewayMetricsUrls: ['http://127.0.0.1:9/metrics']}\n"
            "deriveMissingProfiles: false\n",
        },
    ),
    "diag": Server(
        ("aibrix-diag", "--periodic", "--metrics-port", "9400", "--interval", "1"),
        "http://127.0.0.1:9400/metrics",  # the DaemonSet's probe path
        {"healthy-8gpu.yaml": (REPO / "examples" / "faults" / "healthy-8gpu.yaml").read_text()},
        {"AIBRIX_DIAG_MOCK": "/etc/smoke/healthy-8gpu.yaml", "NODE_NAME": "smoke-node"},
    ),
}


class SmokeFailure(Exception):
    """One check failed; ``str()`` says what and shows the component's output."""


def _sh(argv: list[str], **kwargs: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SmokeFailure(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


class Image:
    """A working container of one image: its root filesystem mounted on the host."""

    def __init__(self, buildah: list[str], ref: str) -> None:
        self.buildah, self.ref = buildah, ref
        self.config = json.loads(_sh([*buildah, "inspect", "--type", "image", ref]))["OCIv1"]

    @contextmanager
    def rootfs(self) -> Iterator[tuple[str, Path]]:
        container = _sh([*self.buildah, "from", "--quiet", "--pull=never", self.ref]).strip()
        try:
            yield container, Path(_sh([*self.buildah, "mount", container]).strip())
        finally:
            subprocess.run([*self.buildah, "umount", container], capture_output=True)
            subprocess.run([*self.buildah, "rm", container], capture_output=True)

    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config["config"].get("Env", []))


def _setup_script(root: Path, argv: list[str], *, user: str, env: dict[str, str], cwd: str,
                  binds: dict[str, tuple[Path, bool]], tmpfs: tuple[str, ...]) -> str:
    """The shell that turns a fresh mount/PID/network namespace into the container, then execs.

    The image's root becomes a read-only bind mount; /proc, a minimal /dev and a /dev/shm tmpfs
    are added as a container runtime would; ``binds`` (destination -> (host path, read-only))
    stand for ConfigMaps and emptyDirs, ``tmpfs`` for memory emptyDirs. The final exec chain
    (chroot, env) keeps one process: the component becomes PID 1.
    """
    q = shlex.quote
    r = str(root)
    lines = ["set -eu", "ip link set lo up"]
    # Mount points first, while the container's own layer is still writable.
    points = ["proc", "dev", *[d.lstrip("/") for d in binds], *[d.lstrip("/") for d in tmpfs]]
    lines.append("mkdir -p " + " ".join(q(f"{r}/{p}") for p in points))
    lines += [f"mount --bind {q(r)} {q(r)}", f"mount -o remount,bind,ro {q(r)}", f"mount -t proc proc {q(r + '/proc')}",
              f"mount -t tmpfs -o mode=755,size=1m dev {q(r + '/dev')}"]
    for node in ("null", "zero", "random", "urandom"):
        lines += [f"touch {q(f'{r}/dev/{node}')}", f"mount --bind /dev/{node} {q(f'{r}/dev/{node}')}"]
    lines += [f"mkdir {q(r + '/dev/shm')}", f"mount -t tmpfs -o mode=1777,size=64m shm {q(r + '/dev/shm')}"]
    for dest, (source, read_only) in binds.items():
        target = q(r + dest)
        lines.append(f"mount --bind {q(str(source))} {target}")
        if read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    for dest in tmpfs:
        lines.append(f"mount -t tmpfs -o mode=1777,size=64m tmp {q(r + dest)}")
    uid, gid = user.split(":")
    env_args = " ".join(q(f"{k}={v}") for k, v in sorted(env.items()))
    lines.append(f"exec chroot --userspec={uid}:{gid} --groups={gid} {q(r)} /usr/bin/env -i --chdir={q(cwd)} "
                 f"{env_args} {shlex.join(argv)}")
    return "\n".join(lines)


@dataclass
class Contained:
    """A command running as PID 1 of its own namespaces; ``pid`` is its host PID."""

    process: subprocess.Popen[bytes]
    pid: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def start(root: Path, argv: list[str], *, user: str, env: dict[str, str], log: Path, cwd: str = "/",
          binds: dict[str, tuple[Path, bool]] | None = None, tmpfs: tuple[str, ...] = (),
          stdout: Path | None = None) -> Contained:
    script = _setup_script(root, argv, user=user, env=env, cwd=cwd, binds=binds or {}, tmpfs=tmpfs)
    with open(log, "wb") as err, open(stdout or log, "ab") as out:
        process = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
        )
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    for _ in range(500):
        text = children.read_text().split() if children.exists() else []
        if text:
            return Contained(process, int(text[0]), log)
        if process.poll() is not None:
            break
        time.sleep(0.01)
    raise SmokeFailure(f"{argv[0]}: the namespace did not start:\n{log.read_text(errors='replace')}")


def _probe(pid: int, url: str) -> bool:
    code = f"import urllib.request,sys; sys.exit(0 if urllib.request.urlopen({url!r}, timeout=2).status == 200 else 1)"
    done = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", code], capture_output=True)
    return done.returncode == 0


def check_server(image: Image, root: Path, name: str, server: Server, work: Path) -> str:
    config_dir = work / f"{name}-config"
    config_dir.mkdir()
    for file_name, text in server.files.items():
        (config_dir / file_name).write_text(text)
    env = {**image.env(), **server.env}
    running = start(root, list(server.argv), user=RUNTIME_USER, env=env, log=work / f"{name}.log",
                    binds={"/etc/smoke": (config_dir, True)})
    try:
        deadline = time.monotonic() + 60
        while not _probe(running.pid, server.health):
            if running.process.poll() is not None:
                raise SmokeFailure(f"{name}: exited {running.process.returncode} before answering "
                                   f"{server.health}:\n{running.output()}")
            if time.monotonic() > deadline:
                raise SmokeFailure(f"{name}: {server.health} did not answer within 60 s:\n{running.output()}")
            time.sleep(0.3)
        os.kill(running.pid, signal.SIGTERM)  # from outside its PID namespace, as the kubelet
        try:
            code = running.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise SmokeFailure(f"{name}: still running 30 s after SIGTERM (as PID 1):\n{running.output()}") from None
        if code != 0:
            raise SmokeFailure(f"{name}: exited {code} after SIGTERM, expected 0:\n{running.output()}")
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
    return f"{' '.join(server.argv[:2])}: PID 1, UID 65532, read-only root; {server.health} answered; SIGTERM -> exit 0"


def compiled_production(namespace: str, kube_version: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "compiler.cli", str(EXAMPLE), "--namespace", namespace, "--kube-version", kube_version],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SmokeFailure(f"aibrix-compile {EXAMPLE.name} failed on the host: {done.stderr}")
    return done.stdout


def check_kv_connector(image: Image, root: Path, work: Path) -> str:
    """The compiled packages init container (KV connector, Ray launcher) copies our packages
    into an emptyDir."""
    init = None
    for doc in yaml.safe_load_all(compiled_production("llm-prod", "1.31")):
        for container in (doc or {}).get("spec", {}).get("template", {}).get("spec", {}).get("initContainers", []):
            if container["name"] == "aibrix-packages":
                init = container
    if init is None:
        raise SmokeFailure("the compiled production example has no aibrix-packages init container to run")
    target = work / "kv-connector"
    target.mkdir()
    target.chmod(0o777)  # an emptyDir is world-writable
    mount = next(m["mountPath"] for m in init["volumeMounts"])
    env = {**image.env(), **{e["name"]: e["value"] for e in init.get("env", [])}}
    running = start(root, [*init["command"], *init.get("args", [])], user=RUNTIME_USER, env=env,
                    log=work / "kv-connector.log", binds={mount: (target, False)})
    if running.process.wait(timeout=60) != 0:
        raise SmokeFailure(f"aibrix-packages init container failed:\n{running.output()}")
    if not (target / "runtime_components" / "kv" / "vllm_connector.py").is_file():
        raise SmokeFailure(f"aibrix-packages init container did not copy runtime_components/kv into {mount}")
    return f"aibrix-packages init container (compiled command): copied the connector into the emptyDir at {mount}"


def check_argocd(image: Image, root: Path, work: Path) -> str:
    plugin = yaml.safe_load((root / "home/argocd/cmp-server/config/plugin.yaml").read_text())
    generate = plugin["spec"]["generate"]
    app = work / "app"
    app.mkdir()
    (app / "inferencestack.yaml").write_text(EXAMPLE.read_text())
    env = {
        **image.env(),
        "ARGOCD_APP_NAME": "llm-prod", "ARGOCD_APP_NAMESPACE": "llm-prod", "KUBE_VERSION": "1.31.4",
        "ARGOCD_APP_SOURCE_PATH": "stacks/prod", "ARGOCD_ENV_STACK_FILE": "inferencestack.yaml",
        "KUBE_API_VERSIONS": "v1,apps/v1,policy/v1,autoscaling/v2",
    }
    stdout = work / "argocd.out"
    running = start(root, [*generate["command"], *generate.get("args", [])], user=ARGOCD_USER, env=env,
                    log=work / "argocd.log", cwd="/home/argocd/app", stdout=stdout,
                    binds={"/home/argocd/app": (app, True)}, tmpfs=("/tmp",))
    if running.process.wait(timeout=120) != 0:
        raise SmokeFailure(f"the plugin's generate command failed:\n{running.output()}")
    produced, expected = stdout.read_text(), compiled_production("llm-prod", "1.31.4")
    if produced != expected:
        raise SmokeFailure(f"generate in the image differs from aibrix-compile on the host "
                           f"({len(produced)} vs {len(expected)} bytes)")
    kinds = sum(1 for doc in yaml.safe_load_all(produced) if doc)
    return f"plugin generate (UID 999, read-only root) on {EXAMPLE.name}: {kinds} objects, identical to aibrix-compile"


def check_config(image: Image, target: str, version: str, revision: str | None) -> str:
    config = image.config["config"]
    labels = config.get("Labels") or {}
    missing = [label for label in LABELS if not labels.get(label)]
    if missing:
        raise SmokeFailure(f"{image.ref}: missing OCI labels {missing}")
    if labels["org.opencontainers.image.version"] != version or not image.ref.endswith(f":{version}"):
        raise SmokeFailure(f"{image.ref}: version label {labels['org.opencontainers.image.version']!r} "
                           f"and tag must both be the package version {version}")
    if revision is not None and labels[LABELS[2]] != revision:
        raise SmokeFailure(f"{image.ref}: revision label {labels[LABELS[2]]!r}, expected {revision}")
    user = ARGOCD_USER if target == "argocd-cmp" else RUNTIME_USER
    if config.get("User") != user:
        raise SmokeFailure(f"{image.ref}: runs as {config.get('User')!r}, expected {user}")
    expected_entry = [ENTRYPOINTS[target]] if target in ENTRYPOINTS else None
    if (config.get("Entrypoint") or None) != expected_entry:
        raise SmokeFailure(f"{image.ref}: entrypoint {config.get('Entrypoint')}, expected {expected_entry}")
    if expected_entry and config.get("Cmd"):
        raise SmokeFailure(f"{image.ref}: CMD {config['Cmd']} would be passed to the entrypoint as arguments")
    return f"config: user {user}, entrypoint {expected_entry}, labels version={version} revision={labels[LABELS[2]]}"


def check_scripts(image: Image, container: str, scripts: tuple[str, ...], user: str) -> str:
    loop = "; ".join(f"{s} --help >/dev/null || {{ echo {s} failed >&2; exit 1; }}" for s in scripts)
    _sh([*image.buildah, "run", "--isolation", "chroot", "--user", user, container, "--", "sh", "-c", loop])
    return f"{len(scripts)} console script(s) answer --help as UID {user.split(':')[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("images", nargs="+", metavar="TARGET=REF")
    parser.add_argument("--storage-driver", default="vfs")
    parser.add_argument("--version", required=True, help="the package version every tag must carry")
    parser.add_argument("--revision", help="the git revision the revision label must name")
    args = parser.parse_args(argv)
    buildah = ["buildah", "--storage-driver", args.storage_driver]
    failures = 0
    scripts_checked: tuple[str, ...] | None = None  # diff IDs of the image whose scripts ran
    with tempfile.TemporaryDirectory(prefix="aibrix-image-smoke-") as tmp:
        for item in args.images:
            target, _, ref = item.partition("=")
            work = Path(tmp) / target
            work.mkdir()
            print(f"== {ref}", flush=True)
            try:
                image = Image(buildah, ref)
                results = [check_config(image, target, args.version, args.revision)]
                layers = tuple(image.config["rootfs"]["diff_ids"])
                with image.rootfs() as (container, root):
                    if target == "argocd-cmp":
                        results.append(check_scripts(image, container, ("aibrix-compile",), ARGOCD_USER))
                        results.append(check_argocd(image, root, work))
                    else:
                        # The runtime images share every layer; run all scripts once, and each
                        # image's own entrypoint, and check the layers really are the same.
                        if scripts_checked is None:
                            results.append(check_scripts(image, container, CONSOLE_SCRIPTS, RUNTIME_USER))
                            scripts_checked = layers
                        elif layers != scripts_checked:
                            raise SmokeFailure(f"{ref}: its layers differ from the first runtime image's")
                        else:
                            results.append(check_scripts(image, container, (ENTRYPOINTS[target],), RUNTIME_USER)
                                           + " (layers identical to the first runtime image)")
                        if target in SERVERS:
                            results.append(check_server(image, root, target, SERVERS[target], work))
                        if target == "kv-server":
                            results.append(check_kv_connector(image, root, work))
                for line in results:
                    print(f"  ok  {line}", flush=True)
            except SmokeFailure as failure:
                failures += 1
                print(f"  FAIL {failure}", flush=True)
    print(f"image smoke tests: {len(args.images) - failures} of {len(args.images)} images passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
