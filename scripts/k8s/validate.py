"""Validates rendered Kubernetes manifests, strictly, for one Kubernetes version.

Usage: validate.py --kube-version 1.28 --sidecar-type native|classic|none FILE

Every document is checked against the Kubernetes JSON schemas bundled with
kubernetes-validate in strict mode (unknown fields are errors). A kind without a bundled
schema is an error, except the CRDs listed in CRD_SCHEMAS, which are checked against the
closed schemas beside this script. Then the chart's own rules are checked on every pod
template that holds a bloscar container.

Exit status 0 when everything passed, 1 otherwise; one line per document or finding.
"""

import argparse
import json
import pathlib
import re
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "PodMonitor"): HERE / "podmonitor.schema.json"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SIDECAR_IMAGE = re.compile(r"(^|/)bloscar[:@]")


def known_variables():
    """The BLOSCAR_* names of the configuration contract (src/config.rs and its modules,
    such as src/config/tls.rs; not their tests)."""
    sources = [REPO / "src/config.rs"] + [p for p in (REPO / "src/config").glob("*.rs") if p.name != "tests.rs"]
    return {name for path in sources for name in re.findall(r"\bBLOSCAR_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())}


def check_schema(doc, version):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        schema = json.loads(CRD_SCHEMAS[key].read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
        return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors], "local CRD schema"
    try:
        validated = kv.validate(doc, version, strict=True)
    except kv.ValidationError as e:
        return [f"{'.'.join(map(str, e.path))}: {e.message}"], version
    except kv.SchemaNotFoundError as e:
        return [f"no schema: {e.message}"], version
    if kv.major_minor(validated) != kv.major_minor(version):
        return [f"validated against {validated} instead of {version}"], version
    return [], validated


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def check_sidecar(pod, expected_type, variables):
    """The chart's rules for a pod spec with a bloscar sidecar; returns findings."""
    found = []
    init = [(c, True) for c in pod.get("initContainers") or []]
    main = [(c, False) for c in pod.get("containers") or []]
    sidecars = [(c, is_init) for c, is_init in init + main if SIDECAR_IMAGE.search(c["image"])]
    if not sidecars:
        return ["no bloscar container in the pod template"]
    for c, is_init in sidecars:
        name = c["name"]
        if expected_type == "native" and not (is_init and c.get("restartPolicy") == "Always"):
            found.append(f"{name}: native sidecar must be an init container with restartPolicy Always")
        if expected_type == "classic" and (is_init or "restartPolicy" in c):
            found.append(f"{name}: classic sidecar must be an ordinary container")
        sc = c.get("securityContext", {})
        wanted = {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        }
        for field, value in wanted.items():
            if sc.get(field) is not value:
                found.append(f"{name}: securityContext.{field} must be {json.dumps(value)}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{name}: securityContext.capabilities.drop must be [ALL]")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            found.append(f"{name}: securityContext.seccompProfile.type must be RuntimeDefault")
        if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
            found.append(f"{name}: resources needs requests and limits")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if port != "bloscar-admin" or "bloscar-admin" not in ports:
                found.append(f"{name}: {probe} must use the bloscar-admin port")
        env = env_of(c)
        unknown = sorted(k for k in env if k.startswith("BLOSCAR_") and k not in variables)
        if unknown:
            found.append(f"{name}: variables not in src/config.rs: {', '.join(unknown)}")
        admin = env.get("BLOSCAR_ADMIN_LISTEN", "")
        if not admin.endswith(f":{ports.get('bloscar-admin')}"):
            found.append(f"{name}: BLOSCAR_ADMIN_LISTEN {admin!r} does not match the admin port")
        mode = env.get("BLOSCAR_MODE")
        if mode in ("inbound", "both"):
            listen = env.get("BLOSCAR_INBOUND_LISTEN", "")
            if not listen.endswith(f":{ports.get('bloscar-in')}"):
                found.append(f"{name}: BLOSCAR_INBOUND_LISTEN {listen!r} does not match port bloscar-in")
        if mode in ("outbound", "both"):
            if not env.get("BLOSCAR_OUTBOUND_LISTEN", "").startswith("127.0.0.1:"):
                found.append(f"{name}: the outbound listener must stay on loopback")
            if not env.get("BLOSCAR_OUTBOUND_FORWARD"):
                found.append(f"{name}: BLOSCAR_OUTBOUND_FORWARD is empty")
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for mount in c.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                found.append(f"{name}: volumeMount {mount['name']} has no volume in the pod")
            elif "secret" in volume and not mount.get("readOnly"):
                found.append(f"{name}: Secret volume {mount['name']} must be mounted readOnly")
            if "subPath" in mount:
                found.append(f"{name}: volumeMount {mount['name']} uses subPath, which never sees Secret updates")
        for variable in ("BLOSCAR_INBOUND_TLS_CERT", "BLOSCAR_INBOUND_TLS_KEY", "BLOSCAR_INBOUND_TLS_CLIENT_CA",
                         "BLOSCAR_OUTBOUND_TLS_CA", "BLOSCAR_OUTBOUND_TLS_CERT", "BLOSCAR_OUTBOUND_TLS_KEY"):
            path = env.get(variable)
            if path and not any(path.startswith(m["mountPath"].rstrip("/") + "/") for m in c.get("volumeMounts") or []):
                found.append(f"{name}: {variable} {path!r} is not under a mounted volume")
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace = int(env.get("BLOSCAR_SHUTDOWN_GRACE_SECS") or 30)
        budget = pod.get("terminationGracePeriodSeconds", 30)
        if budget < pre_stop + grace:
            found.append(
                f"{name}: terminationGracePeriodSeconds {budget} < preStop {pre_stop} s + drain {grace} s"
            )
    return found


def write_env(env_dir, ref, pod):
    """Writes the literal environment of each bloscar container, for config_check."""
    env_dir.mkdir(parents=True, exist_ok=True)
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        if SIDECAR_IMAGE.search(c["image"]):
            lines = [f"{e['name']}={e['value']}\n" for e in c.get("env", []) if "value" in e]
            name = f"{ref.replace('/', '-')}-{c['name']}.env"
            (env_dir / name).write_text("".join(lines))


def pod_specs(doc):
    if doc["kind"] in WORKLOAD_KINDS:
        yield doc["spec"]["template"]["metadata"].get("labels", {}), doc["spec"]["template"]["spec"]
    elif doc["kind"] == "Pod":
        yield doc["metadata"].get("labels", {}), doc["spec"]


def check_services(docs):
    """Every Service must select at least one rendered pod that has its target port."""
    found = []
    pods = [(labels, spec) for doc in docs for labels, spec in pod_specs(doc)]
    if not pods:
        return found  # selectors of existing workloads cannot be checked here
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"].get("selector", {})
        targets = [p.get("targetPort") for p in svc["spec"]["ports"]]
        matched = [spec for labels, spec in pods if selector.items() <= labels.items()]
        if not matched:
            found.append(f"service/{svc['metadata']['name']}: selects no rendered pod")
        for spec in matched:
            names = {
                p.get("name")
                for c in (spec.get("initContainers") or []) + spec["containers"]
                for p in c.get("ports", [])
            }
            for t in targets:
                if isinstance(t, str) and t not in names:
                    found.append(f"service/{svc['metadata']['name']}: targetPort {t} not in the pod")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kube-version", required=True)
    ap.add_argument("--sidecar-type", choices=["native", "classic", "none"], required=True)
    ap.add_argument("--env-dir", help="write each sidecar's NAME=VALUE environment here")
    ap.add_argument("file")
    args = ap.parse_args()

    docs = [d for d in yaml.safe_load_all(pathlib.Path(args.file).read_text()) if d]
    variables = known_variables()
    failures = 0
    for doc in docs:
        ref = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
        errors, against = check_schema(doc, args.kube_version)
        for labels, spec in pod_specs(doc):
            if args.sidecar_type != "none":
                errors += check_sidecar(spec, args.sidecar_type, variables)
            if args.env_dir:
                write_env(pathlib.Path(args.env_dir), ref, spec)
        if errors:
            failures += 1
            for e in errors:
                print(f"  invalid {ref} ({against}): {e}")
        else:
            print(f"  valid   {ref} ({against}, strict)")
    for e in check_services(docs):
        failures += 1
        print(f"  invalid {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
