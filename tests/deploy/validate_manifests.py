#!/usr/bin/python3
"""Static checks of the deployment files: Dockerfile, deploy/compose*.yaml and
deploy/k8s/*.yaml.

Every YAML file must parse, and the pieces must fit together: compose health
checks probe the ports the services listen on, depends_on names existing
services with health conditions; Kubernetes objects are well formed, Service
selectors and target ports match a Deployment, the HPA scales an existing
Deployment, env/volume references name objects that exist, the kustomization
lists every manifest, probes point at declared container ports.

Environment keys are checked against the real names, derived from the
sources so the list cannot drift: BNSERVE_<FLAG> for every ABSL_FLAG of the
container's binary (server/trainer/main.cc, server/inference/main.cc), plus
the library variables the servers recognise
(kLibraryEnvironmentVariables in server/common/server_setup.cc), which must
name every "BNSERVE_*" literal in model/, store/ and server/. Test-only
variables (BNSERVE_TEST_*) are refused in a manifest. A ConfigMap loaded with
envFrom must fit every container that loads it.

Usage: validate_manifests.py [REPO_ROOT]   (default: two levels up)
       validate_manifests.py REPO_ROOT --self-test
  --self-test: the checks must catch planted mistakes (an env typo in a
  ConfigMap, an inference flag in the trainer's env, a test-only variable in
  compose) in a copy of the manifests, and pass on the unchanged copy.
Exit 0 when all checks pass, 1 on failures (each printed), 77 when PyYAML is
missing (Debian: python3-yaml; in CI, CI=true, exit 1 instead).
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "common"))
import skip  # noqa: E402

try:
    import yaml
except ImportError:  # pragma: no cover
    skip.skip_script("PyYAML is not installed (apt-get install python3-yaml)")

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
ROOT = os.path.abspath(ARGS[0] if ARGS else
                       os.path.join(os.path.dirname(__file__), "..", ".."))
# Where the Dockerfile and deploy/ are read (--manifests DIR: a copy, for
# --self-test); the sources are always read from ROOT.
MANIFESTS = next((a.split("=", 1)[1] for a in sys.argv[1:]
                  if a.startswith("--manifests=")), ROOT)
DEPLOY = os.path.join(MANIFESTS, "deploy")
K8S = os.path.join(DEPLOY, "k8s")

failures = []
checks = 0

BINARIES = {"bnserve-trainer": "server/trainer/main.cc",
            "bnserve-inference": "server/inference/main.cc"}


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def environment_names():
    """{binary: set of BNSERVE_* names it reads}, from the sources."""
    setup = read("server/common/server_setup.cc")
    block = re.search(r"kLibraryEnvironmentVariables\[\d*\]\s*=\s*\{(.*?)\};",
                      setup, re.S)
    library = set(re.findall(r'"(BNSERVE_[A-Z0-9_]+)"', block.group(1))
                  if block else [])
    check(library, "server_setup.cc: kLibraryEnvironmentVariables not found")
    for top in ("model", "store", "server"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if not f.endswith((".cc", ".h")):
                    continue
                path = os.path.join(dirpath, f)
                with open(path, encoding="utf-8") as src:
                    for name in re.findall(r'"(BNSERVE_[A-Z0-9_]+)"', src.read()):
                        check(name in library,
                              f"{os.path.relpath(path, ROOT)} reads {name}, which "
                              "kLibraryEnvironmentVariables (server/common/"
                              "server_setup.cc) does not list: the servers "
                              "would warn that it is unknown")
    names = {}
    for binary, main in BINARIES.items():
        flags = re.findall(r"ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,", read(main))
        check(len(flags) >= 5, f"{main}: no ABSL_FLAG found")
        names[binary] = {"BNSERVE_" + f.upper() for f in flags} | library
    return names


NAMES = None


def check_env_keys(where, binary, keys):
    """Every key is a name `binary` reads, and none is test-only."""
    global NAMES
    if NAMES is None:
        NAMES = environment_names()
    for key in keys:
        if not str(key).startswith("BNSERVE_"):
            continue
        check(not key.startswith("BNSERVE_TEST_"),
              f"{where}: {key} is a test-only variable; never set it in a "
              "deployment")
        check(key in NAMES[binary],
              f"{where}: {key} is not read by {binary} (not BNSERVE_<FLAG> "
              "of one of its flags nor a library variable)")


def binary_of(command):
    words = command if isinstance(command, list) else str(command).split()
    return next((w for w in words if w in BINARIES), None)


def check(cond, message):
    global checks
    checks += 1
    if not cond:
        failures.append(message)
    return cond


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ------------------------------------------------------------------ Dockerfile
def check_dockerfile():
    path = os.path.join(MANIFESTS, "Dockerfile")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Join continuation lines into instructions.
    instructions = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instructions.append(line)
    froms = [i.split()[1] for i in instructions if i.upper().startswith("FROM ")]
    check(len(froms) >= 2, "Dockerfile: expected a multi-stage build")
    check(any(re.search(r"debian:bookworm$", f) for f in froms),
          "Dockerfile: builder should be FROM debian:bookworm")
    check(froms and froms[-1].endswith("debian:bookworm-slim"),
          "Dockerfile: runtime stage should be FROM debian:bookworm-slim")
    check("scripts/install-deps.sh" in text,
          "Dockerfile: builder must use scripts/install-deps.sh")
    check(re.search(r"\bctest\b", text) is not None,
          "Dockerfile: tests must run in the build stage")
    users = [i.split()[1] for i in instructions if i.upper().startswith("USER ")]
    check(users and not users[-1].startswith(("root", "0")),
          "Dockerfile: the final USER must not be root")
    exposed = set()
    for i in instructions:
        if i.upper().startswith("EXPOSE "):
            exposed.update(p.split("/")[0] for p in i.split()[1:])
    check({"50051", "50052", "9090"} <= exposed,
          f"Dockerfile: EXPOSE 50051 50052 9090 (have {sorted(exposed)})")
    check(any(i.upper().startswith("HEALTHCHECK ") for i in instructions),
          "Dockerfile: HEALTHCHECK missing")
    check(os.access(os.path.join(DEPLOY, "bnserve-healthcheck"), os.X_OK),
          "deploy/bnserve-healthcheck must exist and be executable")
    for binary in ("bnserve-trainer", "bnserve-inference", "bnctl"):
        check(binary in text, f"Dockerfile: {binary} is not installed")
    ignore = os.path.join(MANIFESTS, ".dockerignore")
    check(os.path.exists(ignore), ".dockerignore missing")
    if os.path.exists(ignore):
        with open(ignore, encoding="utf-8") as f:
            entries = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        check(".git" in entries and any(e.startswith("build") for e in entries),
              ".dockerignore must exclude .git and build trees")


# ------------------------------------------------------------------ compose
def host_port(mapping):
    # "127.0.0.1:50052:50052" -> ("127.0.0.1", "50052", "50052")
    parts = str(mapping).split(":")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (None, *parts[-2:])


def check_prometheus(services):
    """The Prometheus service mounts deploy/prometheus.yml, whose targets are
    the trainer's HTTP port and every inference replica's metrics port
    (services under an optional profile, such as `ha`'s trainer-2, are not
    scraped: a target that is down unless its profile runs would read as an
    outage)."""
    prom = services.get("prometheus")
    if not check(prom is not None, "compose.yaml: no prometheus service"):
        return
    mounts = [str(v) for v in prom.get("volumes", [])]
    check("./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts,
          f"compose.yaml: prometheus mounts {mounts}, not ./prometheus.yml")
    path = os.path.join(DEPLOY, "prometheus.yml")
    if not check(os.path.exists(path), "deploy/prometheus.yml missing"):
        return
    config = load_all(path)[0]
    targets = set()
    for job in config.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            targets.update(sc.get("targets", []))
    expected = set()
    for name, svc in services.items():
        env = svc.get("environment", {}) or {}
        binary = binary_of(svc.get("command", []))
        if svc.get("profiles"):
            continue
        if binary == "bnserve-trainer":
            expected.add(f"{name}:{env.get('BNSERVE_HTTP_PORT', '8001')}")
        elif binary == "bnserve-inference":
            expected.add(f"{name}:{env.get('BNSERVE_METRICS_PORT', '9090')}")
    check(targets == expected,
          f"deploy/prometheus.yml scrapes {sorted(targets)}; the servers' "
          f"metrics are at {sorted(expected)}")


def check_compose():
    main_path = os.path.join(DEPLOY, "compose.yaml")
    docs = load_all(main_path)
    if not check(len(docs) == 1 and isinstance(docs[0], dict),
                 "compose.yaml: one mapping expected"):
        return
    compose = docs[0]
    services = compose.get("services", {})
    volumes = compose.get("volumes", {}) or {}
    check({"redis", "trainer", "inference-1", "inference-2"} <= set(services),
          f"compose.yaml: services are {sorted(services)}")
    redis = services.get("redis", {})
    cmd = " ".join(map(str, redis.get("command", [])))
    check("--appendonly yes" in cmd, "compose.yaml: redis must run with --appendonly yes")
    seen_ports = set()
    for name, svc in services.items():
        for p in svc.get("ports", []):
            ip, published, _ = host_port(p)
            check(ip == "127.0.0.1", f"compose.yaml: {name} publishes {p} beyond loopback")
            check(published not in seen_ports, f"compose.yaml: host port {published} used twice")
            seen_ports.add(published)
        for dep, cond in (svc.get("depends_on") or {}).items():
            check(dep in services, f"compose.yaml: {name} depends on unknown {dep}")
            check(cond.get("condition") == "service_healthy",
                  f"compose.yaml: {name} -> {dep} should wait for service_healthy")
        for v in svc.get("volumes", []):
            source = str(v).split(":")[0]
            if not source.startswith(("/", ".")):
                check(source in volumes, f"compose.yaml: {name} uses undeclared volume {source}")
        check("healthcheck" in svc, f"compose.yaml: {name} has no healthcheck")
    check("bnserve-store" in volumes, "compose.yaml: the bnserve-store volume is missing")
    for name in ("trainer", "inference-1", "inference-2"):
        svc = services.get(name, {})
        env = svc.get("environment", {})
        check(str(env.get("BNSERVE_STORE", "")).startswith("redis://redis:6379"),
              f"compose.yaml: {name} should use the redis store")
        port = str(env.get("BNSERVE_PORT", ""))
        test = svc.get("healthcheck", {}).get("test", [])
        check(test[:3] == ["CMD", "bnctl", "health"] and f"localhost:{port}" in test,
              f"compose.yaml: {name} healthcheck must be bnctl health on localhost:{port}")
        targets = {host_port(p)[2] for p in svc.get("ports", [])}
        check(port in targets, f"compose.yaml: {name} does not publish its port {port}")
        check("redis" in (svc.get("depends_on") or {}),
              f"compose.yaml: {name} should depend on redis")
        check(svc.get("image") == services["trainer"].get("image"),
              f"compose.yaml: {name} should use the same image as the trainer")
    for name, svc in services.items():
        binary = binary_of(svc.get("command", []))
        if binary:
            check_env_keys(f"compose.yaml: {name}", binary,
                           (svc.get("environment") or {}).keys())

    check_prometheus(services)

    override_path = os.path.join(DEPLOY, "compose.file-store.yaml")
    if check(os.path.exists(override_path), "compose.file-store.yaml missing"):
        override = load_all(override_path)[0]
        for name, svc in override.get("services", {}).items():
            check(name in services, f"compose.file-store.yaml: unknown service {name}")
            check(svc.get("environment", {}).get("BNSERVE_STORE", "").startswith("/"),
                  f"compose.file-store.yaml: {name} should use a file store")
            binary = binary_of(services.get(name, {}).get("command", []))
            if binary:
                check_env_keys(f"compose.file-store.yaml: {name}", binary,
                               (svc.get("environment") or {}).keys())
            for v in svc.get("volumes", []):
                check(str(v).split(":")[0] in volumes,
                      f"compose.file-store.yaml: {name} volume {v} is not declared")

    sentinel_path = os.path.join(DEPLOY, "compose.sentinel.yaml")
    if check(os.path.exists(sentinel_path), "compose.sentinel.yaml missing"):
        override = load_all(sentinel_path)[0]
        extra = override.get("services", {})
        all_services = set(services) | set(extra)
        all_volumes = set(volumes) | set(override.get("volumes", {}) or {})
        replicas = [n for n, svc in extra.items()
                    if "--replicaof" in " ".join(map(str, svc.get("command", [])))]
        sentinels = [n for n in extra if n.startswith("sentinel-")]
        check(len(replicas) >= 1 and len(sentinels) >= 3,
              f"compose.sentinel.yaml: {len(replicas)} replicas, "
              f"{len(sentinels)} Sentinels")
        for name, svc in extra.items():
            env = svc.get("environment", {}) or {}
            if name in ("trainer", "inference-1", "inference-2"):
                store = env.get("BNSERVE_STORE", "")
                check(store.startswith("redis-sentinel://") and
                      all(f"{s}:26379" in store for s in sentinels),
                      f"compose.sentinel.yaml: {name} should use every Sentinel")
            for dep in (svc.get("depends_on") or {}):
                check(dep in all_services,
                      f"compose.sentinel.yaml: {name} depends on unknown {dep}")
            for v in svc.get("volumes", []):
                check(str(v).split(":")[0] in all_volumes,
                      f"compose.sentinel.yaml: {name} volume {v} is not declared")
        check(extra.get("trainer", {}).get("environment", {}).get(
                  "BNSERVE_REDIS_MIN_REPLICAS") == str(len(replicas)),
              "compose.sentinel.yaml: the trainer should wait for every replica")


# ------------------------------------------------------------------ k8s
def container_ports(container):
    ports = {}
    for p in container.get("ports", []):
        ports[p["containerPort"]] = p.get("name")
    return ports


def port_matches(ref, ports):
    if isinstance(ref, int):
        return ref in ports
    return ref in ports.values()


def check_k8s():
    files = sorted(f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")))
    objects = []
    kustomization = None
    for f in files:
        for doc in load_all(os.path.join(K8S, f)):
            if doc.get("kind") == "Kustomization":
                kustomization = (f, doc)
                continue
            objects.append((f, doc))
    by_kind = {}
    for f, o in objects:
        ok = check(all(k in o for k in ("apiVersion", "kind", "metadata")),
                   f"k8s/{f}: object without apiVersion/kind/metadata")
        if ok:
            check("name" in o["metadata"], f"k8s/{f}: {o['kind']} without a name")
            by_kind.setdefault(o["kind"], {})[o["metadata"].get("name")] = o
            if o["kind"] != "Namespace":
                check(o["metadata"].get("namespace") == "bnserve",
                      f"k8s/{f}: {o['kind']}/{o['metadata'].get('name')} not in namespace bnserve")

    if check(kustomization is not None, "k8s: kustomization.yaml missing"):
        listed = set(kustomization[1].get("resources", []))
        manifest_files = {f for f, _ in objects}
        check(listed == manifest_files,
              f"k8s/kustomization.yaml lists {sorted(listed)}, files are {sorted(manifest_files)}")

    deployments = by_kind.get("Deployment", {})
    for name in ("redis", "bnserve-trainer", "bnserve-inference"):
        check(name in deployments, f"k8s: Deployment {name} missing")
    for name in ("redis", "bnserve-trainer", "bnserve-inference"):
        check(name in by_kind.get("Service", {}), f"k8s: Service {name} missing")
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    pvcs = by_kind.get("PersistentVolumeClaim", {})

    for dname, d in deployments.items():
        check(d["apiVersion"] == "apps/v1", f"k8s: Deployment {dname} apiVersion")
        spec = d.get("spec", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        tmpl = spec.get("template", {})
        labels = tmpl.get("metadata", {}).get("labels", {})
        check(selector and all(labels.get(k) == v for k, v in selector.items()),
              f"k8s: Deployment {dname} selector does not match its template labels")
        pod = tmpl.get("spec", {})
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "secret" in v:
                check(v["secret"]["secretName"] in secrets,
                      f"k8s: {dname} mounts unknown Secret {v['secret']['secretName']}")
            if "configMap" in v:
                check(v["configMap"]["name"] in configmaps,
                      f"k8s: {dname} mounts unknown ConfigMap {v['configMap']['name']}")
            if "persistentVolumeClaim" in v:
                check(v["persistentVolumeClaim"]["claimName"] in pvcs,
                      f"k8s: {dname} uses unknown PVC")
        containers = pod.get("containers", [])
        check(containers, f"k8s: Deployment {dname} has no containers")
        for c in containers:
            cname = f"{dname}/{c.get('name')}"
            check("image" in c, f"k8s: {cname} has no image")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                check({"cpu", "memory"} <= set(res.get(part, {})),
                      f"k8s: {cname} needs cpu and memory {part}")
            ports = container_ports(c)
            for probe_name in ("readinessProbe", "livenessProbe"):
                probe = c.get(probe_name)
                if not check(probe is not None, f"k8s: {cname} has no {probe_name}"):
                    continue
                for kind in ("grpc", "tcpSocket", "httpGet"):
                    if kind in probe:
                        check(port_matches(probe[kind]["port"], ports),
                              f"k8s: {cname} {probe_name} port {probe[kind]['port']} not declared")
            binary = binary_of(c.get("command", []) + c.get("args", []))
            if binary:
                check_env_keys(f"k8s: {cname} env", binary,
                               [e["name"] for e in c.get("env", [])])
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    check(ef["configMapRef"]["name"] in configmaps,
                          f"k8s: {cname} envFrom unknown ConfigMap")
                    if binary and ef["configMapRef"]["name"] in configmaps:
                        cm_name = ef["configMapRef"]["name"]
                        check_env_keys(
                            f"k8s: ConfigMap {cm_name} loaded by {cname}",
                            binary,
                            configmaps[cm_name].get("data", {}).keys())
                if "secretRef" in ef:
                    check(ef["secretRef"]["name"] in secrets,
                          f"k8s: {cname} envFrom unknown Secret")
            mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
            for m in mounts:
                check(m in volumes, f"k8s: {cname} mounts undeclared volume {m}")
            env = {e["name"]: e for e in c.get("env", [])}
            token = env.get("BNSERVE_TOKEN_FILE", {}).get("value")
            if token:
                secret_mounts = [mounts[n]["mountPath"] for n in mounts
                                 if "secret" in volumes.get(n, {})]
                check(any(token.startswith(p.rstrip("/") + "/") for p in secret_mounts),
                      f"k8s: {cname} BNSERVE_TOKEN_FILE {token} is not in a mounted Secret")
                key = os.path.basename(token)
                secret_names = [volumes[n]["secret"]["secretName"] for n in mounts
                                if "secret" in volumes.get(n, {})]
                check(any(key in secrets[s].get("stringData", {}) or
                          key in secrets[s].get("data", {}) for s in secret_names
                          if s in secrets),
                      f"k8s: {cname} token key {key} missing from its Secret")

    trainer = deployments.get("bnserve-trainer")
    if trainer:
        c = trainer["spec"]["template"]["spec"]["containers"][0]
        check(c.get("readinessProbe", {}).get("grpc", {}).get("port") == 50051,
              "k8s: trainer readiness must be a native gRPC probe on 50051")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        check("BNSERVE_TOKEN_FILE" in env, "k8s: trainer must read its token file")
    inference = deployments.get("bnserve-inference")
    if inference:
        c = inference["spec"]["template"]["spec"]["containers"][0]
        check(c.get("readinessProbe", {}).get("grpc", {}).get("port") == 50052,
              "k8s: inference readiness must be a native gRPC probe on 50052")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        check(env.get("BNSERVE_PORT") == "50052", "k8s: inference BNSERVE_PORT")

    for sname, s in by_kind.get("Service", {}).items():
        selector = s.get("spec", {}).get("selector", {})
        targets = [d for d in deployments.values()
                   if selector and all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                                       for k, v in selector.items())]
        if not check(targets, f"k8s: Service {sname} selects no Deployment"):
            continue
        ports = {}
        for c in targets[0]["spec"]["template"]["spec"]["containers"]:
            ports.update(container_ports(c))
        for p in s["spec"].get("ports", []):
            check(port_matches(p.get("targetPort", p["port"]), ports),
                  f"k8s: Service {sname} targetPort {p.get('targetPort')} not a container port")

    hpas = by_kind.get("HorizontalPodAutoscaler", {})
    check(hpas, "k8s: no HorizontalPodAutoscaler")
    for hname, h in hpas.items():
        check(h["apiVersion"] == "autoscaling/v2", f"k8s: HPA {hname} must be autoscaling/v2")
        ref = h["spec"]["scaleTargetRef"]
        check(ref.get("kind") == "Deployment" and ref.get("name") in deployments,
              f"k8s: HPA {hname} scales unknown {ref}")
        check(1 <= h["spec"].get("minReplicas", 1) <= h["spec"]["maxReplicas"],
              f"k8s: HPA {hname} replica bounds")
        check(h["spec"].get("metrics"), f"k8s: HPA {hname} has no metrics")

    cm = configmaps.get("bnserve-config", {})
    check(str(cm.get("data", {}).get("BNSERVE_STORE", "")).startswith("redis://"),
          "k8s: ConfigMap bnserve-config must set BNSERVE_STORE to Redis")
    for key, value in cm.get("data", {}).items():
        check(key.startswith("BNSERVE_") and isinstance(value, str),
              f"k8s: ConfigMap key {key} must be a BNSERVE_* string")


def self_test():
    """Plants mistakes in copies of the manifests; each must be reported."""
    import shutil
    import subprocess
    import tempfile

    def run(mutate):
        with tempfile.TemporaryDirectory(prefix="bnserve-manifests-") as tmp:
            for name in ("Dockerfile", ".dockerignore"):
                shutil.copy(os.path.join(ROOT, name), tmp)
            shutil.copytree(os.path.join(ROOT, "deploy"),
                            os.path.join(tmp, "deploy"), symlinks=True)
            mutate(tmp)
            return subprocess.run(
                [sys.executable, os.path.abspath(__file__), ROOT,
                 f"--manifests={tmp}"], capture_output=True, text=True)

    def replace(tmp, rel, old, new):
        path = os.path.join(tmp, rel)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert old in text, (rel, old)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new, 1))

    cases = [
        ("unchanged", lambda t: None, None),
        ("ConfigMap typo", lambda t: replace(
            t, "deploy/k8s/configmap.yaml", 'BNSERVE_VERSIONS_TO_KEEP: "2"',
            'BNSERVE_VERSION_TO_KEEP: "2"'),
         "BNSERVE_VERSION_TO_KEEP is not read by bnserve-inference"),
        ("inference flag given to the trainer", lambda t: replace(
            t, "deploy/k8s/trainer.yaml", "- name: BNSERVE_PORT",
            '- name: BNSERVE_MODELS\n              value: "m"\n'
            "            - name: BNSERVE_PORT"),
         "BNSERVE_MODELS is not read by bnserve-trainer"),
        ("test-only variable in compose", lambda t: replace(
            t, "deploy/compose.yaml", 'BNSERVE_PORT: "50051"',
            'BNSERVE_PORT: "50051"\n      BNSERVE_TEST_PUBLISH_PAUSE_DIR: /x'),
         "BNSERVE_TEST_PUBLISH_PAUSE_DIR is a test-only variable"),
    ]
    bad = 0
    for name, mutate, expected in cases:
        r = run(mutate)
        if expected is None:
            ok = r.returncode == 0
        else:
            ok = r.returncode == 1 and expected in r.stdout
        print(("ok  " if ok else "FAIL"), name)
        if not ok:
            bad += 1
            print(r.stdout, r.stderr)
    print(f"{len(cases) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main():
    if "--self-test" in sys.argv:
        return self_test()
    check_dockerfile()
    check_compose()
    check_k8s()
    for f in failures:
        print("FAIL:", f)
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
