#!/usr/bin/env python3
"""Assertions on the objects `helm template` rendered for one values file.

Run by helm/test.sh with the virtualenv's Python (PyYAML; tomllib is in the
standard library from 3.11). Checks what kubernetes-validate cannot: the
chart's own promises (quorum, peers, probes, hardening, secrets only by
reference, the Prometheus Operator objects). Also writes, for test.sh, the
rendered config.toml / coordinator.toml and the environment a node pod would
get (dummy values standing in for the Secrets), so that the real binaries'
`check-config` can judge them.
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

HELM_DIR = Path(__file__).resolve().parent.parent
CHART = HELM_DIR / "rhizome"
REPO = HELM_DIR.parent

FAILURES: list[str] = []


def check(cond: bool, msg: str) -> bool:
    if not cond:
        FAILURES.append(msg)
    return cond


def merge(base, over):
    """Helm's coalescing of a values file over the chart's defaults."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif k in out and isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_values(path: Path) -> dict:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return merge(defaults, yaml.safe_load(path.read_text()) or {})


# --- secrets -------------------------------------------------------------------

SECRET_FIELDS = {"key", "token", "client_secret", "signing_key", "admin_token", "encryption_key"}
SECRET_PATTERNS = [
    (re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----"), "a PEM block"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\."), "a JWT"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/\s\"'@]*:[^/\s\"'@]+@"), "a URL with a password"),
    (re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key)\s*[=:]\s*[\"'][^\"'{$]"), "a password-like assignment"),
]


def walk(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, value


def secret_refs(cfg: dict):
    """Every { env } / { file } reference of a node config, with its path."""
    def rec(v, path):
        if isinstance(v, dict):
            if set(v) in ({"env"}, {"file"}):
                yield path, v
                return
            for k, x in v.items():
                yield from rec(x, f"{path}.{k}" if path else k)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                yield from rec(x, f"{path}[{i}]")
    yield from rec(cfg, "")


def check_no_secret_values(cm_name: str, key: str, text: str) -> None:
    for pattern, what in SECRET_PATTERNS:
        m = pattern.search(text)
        check(m is None, f"ConfigMap {cm_name} {key} holds {what}: {m.group(0)[:20] if m else ''}...")
    if key.endswith(".toml"):
        doc = tomllib.loads(text)
        for path, value in walk(doc):
            leaf = re.sub(r"\[\d+\]", "", path).split(".")[-1]
            if leaf in SECRET_FIELDS and isinstance(value, str):
                check(False, f"ConfigMap {cm_name} {key}: {path} is a secret written as a value")
        # Secret fields hold references, never strings.
        for section in ("clients", "credentials"):
            for i, item in enumerate(doc.get(section, [])):
                for f in SECRET_FIELDS & set(item):
                    v = item[f]
                    check(isinstance(v, dict) and set(v) in ({"env"}, {"file"}),
                          f"{key}: {section}[{i}].{f} is not a {{ env }} / {{ file }} reference")


# --- objects -------------------------------------------------------------------

def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    check(len(found) == 1, f"expected one {kind} {name}, found {len(found)}")
    return found[0] if found else None


def hardened(container: dict, pod_sc: dict, where: str) -> None:
    sc = container.get("securityContext") or {}
    eff = {**pod_sc, **sc}
    check(eff.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true")
    check(isinstance(eff.get("runAsUser"), int) and eff["runAsUser"] > 0, f"{where}: runAsUser is root or unset")
    check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem is not true")
    check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false")
    check(sc.get("privileged") in (None, False), f"{where}: privileged")
    check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{where}: capabilities do not drop ALL")
    check(not (sc.get("capabilities") or {}).get("add"), f"{where}: capabilities added")
    check((eff.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{where}: seccompProfile is not RuntimeDefault")


def check_pod(tpl: dict, where: str, configmap: dict | None) -> dict:
    spec = tpl["spec"]
    pod_sc = spec.get("securityContext") or {}
    check(pod_sc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot is not true")
    check(spec.get("automountServiceAccountToken") is False, f"{where}: service account token mounted")
    check(not spec.get("hostNetwork") and not spec.get("hostPID"), f"{where}: host namespaces")
    for c in spec.get("initContainers", []) + spec["containers"]:
        hardened(c, pod_sc, f"{where} container {c['name']}")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        check("/tmp" in mounts and "emptyDir" in vols.get(mounts.get("/tmp"), {}),
              f"{where}: /tmp is not an emptyDir (the root filesystem is read-only)")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            check(probe in c, f"{where} container {c['name']}: no {probe}")
        check(c.get("resources", {}).get("requests"), f"{where}: no resource requests")
    ann = tpl["metadata"].get("annotations") or {}
    check(re.fullmatch(r"[0-9a-f]{64}", str(ann.get("checksum/config", ""))) is not None,
          f"{where}: no checksum/config annotation")
    if configmap is not None:
        cms = [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
        check(configmap["metadata"]["name"] in cms, f"{where}: does not mount ConfigMap {configmap['metadata']['name']}")
    return spec


def probe_path(c, probe):
    return ((c.get(probe) or {}).get("httpGet") or {}).get("path")


def port_names(c):
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def check_service_targets(svc, pod_spec, where):
    names = set()
    for c in pod_spec["containers"]:
        names |= set(port_names(c))
    for p in svc["spec"]["ports"]:
        check(p.get("targetPort") in names, f"{where}: Service port {p['name']} targets unknown {p.get('targetPort')}")


def selector_matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- main ------------------------------------------------------------------------

def exported_metrics() -> set[str] | None:
    names = set()
    for sub in ("node/src", "coordinator/src"):
        root = REPO / sub
        if not root.is_dir():
            return None
        for f in root.rglob("*.rs"):
            names |= set(re.findall(r'"(rhizome_[a-z_]+)"', f.read_text()))
    return names


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True)
    ap.add_argument("--values", required=True, type=Path)
    ap.add_argument("--manifest", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--release", required=True)
    ap.add_argument("--helm", help="helm binary: also check that a config change changes checksum/config")
    a = ap.parse_args()

    values = load_values(a.values)
    objs = [o for o in yaml.safe_load_all(a.manifest.read_text()) if o]
    ns = a.namespace
    full = a.release if "rhizome" in a.release else f"{a.release}-rhizome"
    node_name, coord_name, headless = f"{full}-node", f"{full}-coordinator", f"{full}-coordinator-headless"
    nv, cv = values["node"], values["coordinator"]

    # No Secret is ever rendered; every object is in the release namespace.
    check(not by_kind(objs, "Secret"), "a Secret object was rendered")
    for o in objs:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            check(o["metadata"].get("namespace") == ns, f"{o['kind']} {o['metadata']['name']} not in namespace {ns}")

    # ConfigMaps: nothing secret-looking, anywhere.
    for cm in by_kind(objs, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            check_no_secret_values(cm["metadata"]["name"], key, text)
        check(not cm.get("binaryData"), f"ConfigMap {cm['metadata']['name']} has binaryData")

    # --- node ---
    cm = one(objs, "ConfigMap", node_name)
    dep = one(objs, "Deployment", node_name)
    node_cfg_text = cm["data"]["config.toml"]
    node_cfg = tomllib.loads(node_cfg_text)
    spec = check_pod(dep["spec"]["template"], f"Deployment {node_name}", cm)
    c = spec["containers"][0]
    check(probe_path(c, "readinessProbe") == "/readyz", "node readinessProbe is not GET /readyz")
    check(probe_path(c, "livenessProbe") == "/healthz", "node livenessProbe is not GET /healthz")
    check(probe_path(c, "startupProbe") == "/healthz", "node startupProbe is not GET /healthz")
    ports = port_names(c)
    check(ports.get("proxy") == int(node_cfg["node"]["listen"].rsplit(":", 1)[1]), "proxy port differs from node.listen")
    check(ports.get("admin") == int(node_cfg["node"]["admin_listen"].rsplit(":", 1)[1]), "admin port differs from node.admin_listen")
    check("--config=/etc/rhizome/config.toml" in c.get("args", []), "node not started with --config")
    check(selector_matches(dep["spec"]["selector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"]),
          "node selector does not match its pods")
    grace = int(re.fullmatch(r"(\d+)s", node_cfg["node"]["shutdown_grace"]).group(1))
    pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    check(pre == nv["preStopSleepSeconds"], f"preStop sleep {pre} != {nv['preStopSleepSeconds']}")
    check(spec["terminationGracePeriodSeconds"] >= pre + grace,
          "terminationGracePeriodSeconds shorter than preStop + shutdown_grace")

    hpa = [o for o in by_kind(objs, "HorizontalPodAutoscaler") if o["metadata"]["name"] == node_name]
    if nv["autoscaling"]["enabled"]:
        check(len(hpa) == 1 and hpa[0]["apiVersion"] == "autoscaling/v2", "no autoscaling/v2 HPA")
        check("replicas" not in dep["spec"], "Deployment sets replicas although the HPA scales it")
        if hpa:
            check(hpa[0]["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": node_name},
                  "HPA does not target the node Deployment")
            check(hpa[0]["spec"]["minReplicas"] == nv["autoscaling"]["minReplicas"], "HPA minReplicas")
        running = nv["autoscaling"]["minReplicas"]
    else:
        check(not hpa, "HPA rendered while autoscaling is off")
        check(dep["spec"].get("replicas") == nv["replicas"], "Deployment replicas differ from node.replicas")
        running = nv["replicas"]
    pdbs = {o["metadata"]["name"]: o for o in by_kind(objs, "PodDisruptionBudget")}
    if nv["pdb"]["enabled"] and running > 1:
        check(node_name in pdbs, f"no node PDB with {running} nodes")
        if node_name in pdbs:
            check(selector_matches(pdbs[node_name]["spec"]["selector"]["matchLabels"],
                                   dep["spec"]["template"]["metadata"]["labels"]), "node PDB selects no node")
    else:
        check(node_name not in pdbs, f"node PDB rendered with {running} node(s): it would block every drain")

    svc = one(objs, "Service", node_name)
    check_service_targets(svc, spec, f"Service {node_name}")
    check(selector_matches(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]), "node Service selects no node")

    ing = [o for o in by_kind(objs, "Ingress")]
    if nv["ingress"]["enabled"]:
        check(len(ing) == 1, "no Ingress")
        for rule in ing[0]["spec"]["rules"] if ing else []:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                check(b["name"] == node_name and b["port"].get("name") == "proxy", "Ingress backend is not the proxy port")
        if nv["ingress"]["tls"]:
            tls = ing[0]["spec"].get("tls") if ing else None
            check(bool(tls) and all(t.get("secretName") and t.get("hosts") for t in tls), "Ingress TLS incomplete")
    else:
        check(not ing, "Ingress rendered while disabled")

    # Node config: mode, Redis, endpoints.
    check(node_cfg["state"]["backend"] == "redis", "node state.backend is not redis")
    redis_url = node_cfg["state"]["redis_url"]
    check(re.match(r"^rediss?(\+sentinel|-cluster)?://", redis_url) is not None and "@" not in redis_url,
          "redis_url is not a redis://, rediss://, redis+sentinel:// or redis-cluster:// URL without password")
    sentinel = values["redis"].get("sentinel") or {}
    if sentinel.get("masterName"):
        hosts = sentinel["hosts"]
        scheme = "rediss+sentinel" if sentinel.get("tls") else "redis+sentinel"
        want = (f"{scheme}://{hosts[0]}/{sentinel.get('database', 0)}"
                f"?sentinelServiceName={sentinel['masterName']}" + "".join(f"&node={h}" for h in hosts[1:]))
        check(redis_url == want, f"redis.sentinel rendered as {redis_url}, not {want}")
    else:
        check(redis_url == values["redis"]["url"], "redis_url is not redis.url")
    if redis_url.startswith("rediss") and values["redis"].get("tls", {}).get("caFile"):
        check(node_cfg["state"].get("tls", {}).get("ca_file") == values["redis"]["tls"]["caFile"],
              "redis.tls.caFile is not rendered as state.tls.ca_file")

    # --- coordinator ---
    dns = f".{ns}.svc" + (f".{values['clusterDomain']}" if values.get("clusterDomain") else "")
    expected_urls = []
    if cv["enabled"]:
        n = cv["replicas"]
        check(n in (1, 3, 5), f"coordinator.replicas {n}")
        expected_urls = [f"http://{coord_name}-{i}.{headless}{dns}:{cv['port']}" for i in range(n)]
        check(node_cfg["coordinator"]["mode"] == "cluster", "nodes not in cluster mode")
        check(node_cfg["coordinator"].get("endpoints") == expected_urls,
              f"node endpoints {node_cfg['coordinator'].get('endpoints')} != {expected_urls}")
        ccm = one(objs, "ConfigMap", coord_name)
        ccfg_text = ccm["data"]["coordinator.toml"]
        ccfg = tomllib.loads(ccfg_text)
        check(ccfg["peers"] == {str(i): u for i, u in enumerate(expected_urls)},
              f"coordinator peers {ccfg['peers']} do not match {n} replicas")
        sts = one(objs, "StatefulSet", coord_name)
        hsvc = one(objs, "Service", headless)
        check(hsvc["spec"].get("clusterIP") == "None", "coordinator Service is not headless")
        check(hsvc["spec"].get("publishNotReadyAddresses") is True, "headless Service does not publish not-ready addresses")
        check(sts["spec"]["serviceName"] == headless, "StatefulSet serviceName is not the headless Service")
        check(sts["spec"]["replicas"] == n, "StatefulSet replicas")
        check(sts["spec"].get("podManagementPolicy") == "Parallel", "podManagementPolicy is not Parallel")
        sspec = check_pod(sts["spec"]["template"], f"StatefulSet {coord_name}", ccm)
        cc = sspec["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            check(probe_path(cc, probe) == "/healthz", f"coordinator {probe} is not GET /healthz")
        check(port_names(cc).get("http") == cv["port"], "coordinator container port")
        check_service_targets(hsvc, sspec, f"Service {headless}")
        check(selector_matches(hsvc["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"]),
              "headless Service selects no coordinator")
        vct = [v["metadata"]["name"] for v in sts["spec"].get("volumeClaimTemplates", [])]
        check("data" in vct, "no PVC template for the raft data dir")
        mounts = {m["name"]: m["mountPath"] for m in cc.get("volumeMounts", [])}
        check(mounts.get("data") == ccfg["data_dir"], "the PVC is not mounted at data_dir")
        env = {e["name"]: e for e in cc.get("env", [])}
        if cv["idSource"] == "podIndexLabel":
            ref = env.get("RHIZOME_COORD__ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            check(ref == "metadata.labels['apps.kubernetes.io/pod-index']", "raft id not taken from the pod-index label")
        else:
            check(cc["command"][:2] == ["/bin/sh", "-c"] and '--id "${HOSTNAME##*-}"' in cc["args"][0],
                  "raft id not taken from the hostname")
        if n > 1 and cv["pdb"]["enabled"]:
            pdb = pdbs.get(coord_name)
            if check(pdb is not None, f"no coordinator PDB with {n} replicas"):
                check(pdb["spec"].get("maxUnavailable") == (n - 1) // 2 and "minAvailable" not in pdb["spec"],
                      f"coordinator PDB {pdb['spec']} does not keep quorum of {n} (maxUnavailable {(n - 1) // 2})")
                check(selector_matches(pdb["spec"]["selector"]["matchLabels"], sts["spec"]["template"]["metadata"]["labels"]),
                      "coordinator PDB selects no replica")
        else:
            check(coord_name not in pdbs, "coordinator PDB with a single replica")
        (a.out / "coordinator.toml").write_text(ccfg_text)
        (a.out / "coordinator-ids").write_text(" ".join(ccfg["peers"]) + "\n")
        np = [o for o in by_kind(objs, "NetworkPolicy")]
        if cv["networkPolicy"]["enabled"]:
            check(len(np) == 1 and np[0]["spec"]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"],
                  "NetworkPolicy does not select the coordinators")
    else:
        check(node_cfg["coordinator"]["mode"] == "redis-lock", "no coordinator, yet nodes not in redis-lock mode")
        check(not by_kind(objs, "StatefulSet"), "StatefulSet rendered while coordinator.enabled is false")

    # --- the Prometheus Operator's objects (no schema in kubernetes-validate) ---
    services = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    sms = by_kind(objs, "ServiceMonitor")
    check(bool(sms) == values["metrics"]["serviceMonitor"]["enabled"], "ServiceMonitor presence")
    for sm in sms:
        check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
        check(set(sm["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, f"ServiceMonitor fields {set(sm['spec'])}")
        matched = [s for s in services.values() if selector_matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        check(len(matched) == 1, f"ServiceMonitor {sm['metadata']['name']} selects {len(matched)} Services")
        for ep in sm["spec"]["endpoints"]:
            check(set(ep) <= {"port", "path", "interval", "scrapeTimeout"}, f"ServiceMonitor endpoint fields {set(ep)}")
            check(ep["path"] == "/metrics", "ServiceMonitor path")
            for s in matched:
                check(ep["port"] in {p["name"] for p in s["spec"]["ports"]}, f"ServiceMonitor port {ep['port']} not on {s['metadata']['name']}")
    if values["metrics"]["serviceMonitor"]["enabled"]:
        check(len(sms) == (2 if cv["enabled"] else 1), "one ServiceMonitor per component")
    rules = by_kind(objs, "PrometheusRule")
    check(bool(rules) == values["metrics"]["prometheusRule"]["enabled"], "PrometheusRule presence")
    known = exported_metrics()
    for pr in rules:
        check(pr["apiVersion"] == "monitoring.coreos.com/v1", "PrometheusRule apiVersion")
        alerts = {}
        for g in pr["spec"]["groups"]:
            check(set(g) <= {"name", "rules", "interval"}, f"rule group fields {set(g)}")
            for r in g["rules"]:
                check(set(r) <= {"alert", "expr", "for", "labels", "annotations"}, f"rule fields {set(r)}")
                alerts[r["alert"]] = r["expr"]
                check(r["expr"].count("(") == r["expr"].count(")") and r["expr"].count("{") == r["expr"].count("}"),
                      f"{r['alert']}: unbalanced expression")
                if known is not None:
                    for m in set(re.findall(r"\b(rhizome_[a-z_]+)", r["expr"])):
                        check(m in known, f"{r['alert']} uses {m}, which neither binary exports")
                for sel in re.findall(r"\{([^}]*)\}", r["expr"]):
                    if "job=" in sel:
                        job = re.search(r'job="([^"]+)"', sel).group(1)
                        check(job in services, f"{r['alert']} selects job {job}, no such Service")
        want = {"RhizomeRedisDown", "RhizomeCredentialCooldown", "RhizomeSseGapsRising"}
        if cv["enabled"]:
            want |= {"RhizomeNoRaftLeader", "RhizomeOwnershipDegraded"}
        check(want <= set(alerts), f"alerts missing: {want - set(alerts)}")
        if "RhizomeNoRaftLeader" in alerts:
            check("rhizome_raft_is_leader" in alerts["RhizomeNoRaftLeader"] and "< 1" in alerts["RhizomeNoRaftLeader"], "no-leader expr")
        check(re.search(r"increase\(rhizome_sse_gaps_total\{[^}]*\}\[10m\]\)", alerts.get("RhizomeSseGapsRising", "")) is not None, "SSE gaps expr")
        # The rule groups as a Prometheus rules file, for `promtool check rules`.
        (a.out / "prometheus-rules.yaml").write_text(yaml.safe_dump({"groups": pr["spec"]["groups"]}, sort_keys=False))

    # --- the node's environment and files, as the pod would have them ---
    env_names, env_out, envfrom = {}, {}, bool(c.get("envFrom"))
    refs = list(secret_refs(node_cfg))
    rs256_env = {cr["signing_key"]["env"] for cr in node_cfg.get("credentials", [])
                 if cr.get("algorithm") == "RS256" and "env" in cr.get("signing_key", {})}
    pem_key = (a.out.parent / "fixtures" / "rsa.pem").read_text()
    ca_pem = (a.out.parent / "fixtures" / "ca.pem").read_text()

    def dummy(name):
        if name in rs256_env:
            return pem_key
        if name == "RHIZOME__STATE__REDIS_URL":  # a whole URL from a Secret (redis.auth.urlKey)
            return re.sub(r"^(rediss?(\+sentinel|-cluster)?)://", r"\1://:dummy-password@", node_cfg["state"]["redis_url"])
        return f"dummy-{name.lower()}"

    for e in c.get("env", []):
        if "value" in e:
            val = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env_out.get(m.group(1), m.group(0)), e["value"])
        else:
            ref = e["valueFrom"]
            check("secretKeyRef" in ref or "fieldRef" in ref, f"env {e['name']}: unexpected source {ref}")
            val = dummy(e["name"])
        env_names[e["name"]] = e
        env_out[e["name"]] = val
    if values["redis"]["auth"]["existingSecret"]:
        check("RHIZOME__STATE__REDIS_URL" in env_out, "redis.auth set but RHIZOME__STATE__REDIS_URL not given")
        check("$(" not in env_out.get("RHIZOME__STATE__REDIS_URL", "$("), "Redis URL references an undefined variable")
    mounts = [m for m in c.get("volumeMounts", []) if m["name"].startswith("secret-")]
    files_dir = a.out / "files"
    config_for_check = node_cfg_text
    for path, ref in refs:
        if "env" in ref:
            name = ref["env"]
            check(name in env_names or envfrom, f"{path} references ${name}, which the pod does not get")
            env_out.setdefault(name, dummy(name))
        else:
            check(any(ref["file"].startswith(m["mountPath"].rstrip("/") + "/") for m in mounts),
                  f"{path} reads {ref['file']}, which no secretMounts entry provides")
    # ca_file paths and { file } references: the pod reads them from mounted
    # Secrets; for check-config they are stood in by files under the output.
    for path, value in walk(node_cfg):
        leaf = re.sub(r"\[\d+\]", "", path).split(".")[-1]
        if leaf in ("ca_file", "cert_file", "key_file", "file") and isinstance(value, str):
            check(any(value.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts),
                  f"{path} = {value}: no secretMounts entry provides it")
            local = files_dir / value.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            # The fixture CA is self-signed with the fixture key: a certificate
            # and its key for cert_file/key_file too.
            stand_in = {"ca_file": ca_pem, "cert_file": ca_pem, "key_file": pem_key}
            local.write_text(stand_in.get(leaf, f"dummy-{local.name}\n"))
            config_for_check = config_for_check.replace(f'"{value}"', f'"{local}"')
    (a.out / "config.toml").write_text(config_for_check)
    with open(a.out / "node-env.sh", "w") as f:
        for k, v in env_out.items():
            f.write(f"{k}={shlex.quote(v)}\n")

    # A change of config.toml changes the pods' checksum (so they roll).
    if a.helm:
        other = subprocess.run([a.helm, "template", a.release, str(CHART), "--namespace", ns, "-f", str(a.values),
                                "--set", "config.node.intentPath=/checksum-probe"],
                               check=True, capture_output=True, text=True).stdout
        dep2 = next(o for o in yaml.safe_load_all(other) if o and o["kind"] == "Deployment")
        check(dep2["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
              != dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"],
              "checksum/config does not follow config.toml")

    kinds = sorted({o["kind"] for o in objs})
    if FAILURES:
        for f in FAILURES:
            print(f"  FAIL {a.case}: {f}", file=sys.stderr)
        return 1
    print(f"    {len(objs)} objects ({', '.join(kinds)}): all assertions hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
