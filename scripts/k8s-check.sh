#!/usr/bin/env bash
# Kubernetes checks: the Dockerfile (hadolint), the Helm chart (helm lint --strict), every
# manifest it renders over a matrix of values and Kubernetes versions (strict schema
# validation plus the chart's own rules, scripts/k8s/validate.py), a chart that adopts
# the sidecar through the named template, every rendered sidecar environment through
# bloscar's configuration parser (examples/config_check.rs), and what must be rejected.
# Prints PASS/FAIL per check and "k8s: N passed, M failed"; exits 1 if any check failed.
# Tools are installed on first use into .venvs/k8s-tools (scripts/k8s/install-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/k8s/install-tools.sh
TOOLS="$PWD/.venvs/k8s-tools/bin"
HELM="$TOOLS/helm"
CHART="$PWD/helm/bloscar"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Keep helm away from the user's own helm configuration and repositories.
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
NEWEST="$("$TOOLS/python" -c 'from kubernetes_validate.utils import latest_version, major_minor; print(major_minor(latest_version()))')"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# check NAME COMMAND...: runs COMMAND, output indented, and counts the result.
check() {
    local name="$1"
    shift
    if "$@" >"$WORK/out" 2>&1; then
        sed 's/^/  /' "$WORK/out"
        pass "$name"
    else
        sed 's/^/  /' "$WORK/out"
        fail "$name"
    fi
}

# must_fail NAME PATTERN COMMAND...: COMMAND must fail, and its output must match PATTERN.
must_fail() {
    local name="$1" pattern="$2"
    shift 2
    if "$@" >"$WORK/out" 2>&1; then
        sed 's/^/  /' "$WORK/out"
        fail "$name (was accepted)"
    elif grep -Eq -- "$pattern" "$WORK/out"; then
        sed 's/^/  /' "$WORK/out"
        pass "$name (rejected)"
    else
        sed 's/^/  /' "$WORK/out"
        fail "$name (failed, but without /$pattern/)"
    fi
}

# render_and_validate NAME CHART_DIR SIDECAR_TYPE KUBE_VERSION [helm args...]
render_and_validate() {
    local name="$1" chart="$2" type="$3" kube="$4"
    shift 4
    local out="$WORK/rendered-${name//[^a-zA-Z0-9.]/_}-$kube.yaml"
    if ! "$HELM" template bloscar-ci "$chart" --namespace models --kube-version "$kube.0" "$@" >"$out" 2>"$WORK/err"; then
        sed 's/^/  /' "$WORK/err"
        fail "render $name for $kube"
        return
    fi
    check "validate $name for Kubernetes $kube" \
        "$TOOLS/python" scripts/k8s/validate.py --kube-version "$kube" --sidecar-type "$type" \
        --env-dir "$WORK/env/$(basename "$out" .yaml)" "$out"
}

echo "== hadolint $("$TOOLS/hadolint" --version)"
check "hadolint Dockerfile" "$TOOLS/hadolint" Dockerfile

echo "== helm lint --strict ($("$HELM" version --short))"
check "helm lint --strict (default values)" "$HELM" lint --strict "$CHART"
for values in "$CHART"/ci/*-values.yaml; do
    check "helm lint --strict -f ci/$(basename "$values")" "$HELM" lint --strict "$CHART" -f "$values"
done

echo "== rendered manifests, strict schemas for Kubernetes 1.27, 1.28 and $NEWEST"
check "default values render no resources" \
    bash -c '! "$1" template bloscar-ci "$2" | grep -q "^kind:"' _ "$HELM" "$CHART"
for kube in 1.28 "$NEWEST"; do
    render_and_validate "native example" "$CHART" native "$kube" -f "$CHART/ci/native-example-values.yaml"
    render_and_validate "native example + PodMonitor" "$CHART" native "$kube" \
        -f "$CHART/ci/native-example-podmonitor-values.yaml"
    render_and_validate "native example, mutual TLS between the sidecars" "$CHART" native "$kube" \
        -f "$CHART/ci/native-example-mtls-values.yaml"
done
for kube in 1.27 1.28 "$NEWEST"; do
    render_and_validate "classic example" "$CHART" classic "$kube" -f "$CHART/ci/classic-example-values.yaml"
    render_and_validate "existing workload (example off) + PodMonitor" "$CHART" none "$kube" \
        -f "$CHART/ci/existing-workload-values.yaml"
done

echo "== the Grafana dashboard ConfigMap holds helm/bloscar/dashboards/bloscar.json as it is"
dashboard_configmap() {
    "$HELM" template bloscar-ci "$CHART" -f "$CHART/ci/native-example-podmonitor-values.yaml" \
        --show-only templates/grafana-dashboard.yaml |
        "$TOOLS/python" -c '
import json, sys, yaml
(cm,) = [d for d in yaml.safe_load_all(sys.stdin) if d]
assert cm["metadata"]["labels"]["grafana_dashboard"] == "1", cm["metadata"]
text = cm["data"]["bloscar.json"]
assert text == open(sys.argv[1]).read().rstrip("\n"), "the ConfigMap differs from the file"
print(json.loads(text)["title"], "dashboard,", len(text), "bytes")
' "$CHART/dashboards/bloscar.json"
}
check "Grafana dashboard ConfigMap" dashboard_configmap

echo "== NOTES.txt (rendered as comments through a copy of the chart: helm template skips NOTES)"
NOTES_CHART="$WORK/notes/bloscar"
mkdir -p "$WORK/notes"
cp -r "$CHART" "$NOTES_CHART"
{
    echo '{{- define "ci.notes" }}'
    cat "$CHART/templates/NOTES.txt"
    echo '{{- end }}'
    echo '# {{ include "ci.notes" . | trim | replace "\n" "\n# " }}'
} >"$NOTES_CHART/templates/zz-notes.yaml"
notes_render() {
    local pattern="$1"
    shift
    "$HELM" template demo "$NOTES_CHART" --namespace models --show-only templates/zz-notes.yaml "$@" |
        tee /dev/stderr | grep -- "$pattern" >/dev/null
}
check "NOTES.txt: example, Service and PodMonitor" notes_render "PodMonitor demo-bloscar scrapes" \
    -f "$CHART/ci/native-example-podmonitor-values.yaml"
check "NOTES.txt: default values" notes_render "port-forward deploy/<your-deployment>"
check "NOTES.txt: native sidecar on 1.27 warns" notes_render "native sidecars need Kubernetes >= 1.28" \
    --kube-version 1.27.0

echo "== a chart that adopts the sidecar with the named template"
ADOPTER="$WORK/charts/triton-with-bloscar"
mkdir -p "$WORK/charts"
cp -r helm/bloscar helm/examples/triton-with-bloscar "$WORK/charts/"
sed -i 's|file://../../bloscar|file://../bloscar|' "$ADOPTER/Chart.yaml"
check "helm dependency build (file://)" "$HELM" dependency build "$ADOPTER"
check "helm lint --strict (adopting chart)" "$HELM" lint --strict "$ADOPTER"
for kube in 1.28 "$NEWEST"; do
    render_and_validate "adopting chart, native" "$ADOPTER" native "$kube"
done
for kube in 1.27 "$NEWEST"; do
    render_and_validate "adopting chart, classic" "$ADOPTER" classic "$kube" --set bloscar.sidecar.type=classic
done

# A pod of each other role, through the same named templates (a copy of the adopting chart
# with one more template).
cat >"$ADOPTER/templates/ci-role.yaml" <<'YAML'
{{- if .Values.ciRole }}
{{- $bloscar := dict "root" $ "values" .Values.bloscar "role" .Values.ciRole "forward" .Values.ciForward }}
apiVersion: v1
kind: Pod
metadata:
  name: ci-{{ .Values.ciRole }}
spec:
  terminationGracePeriodSeconds: {{ include "bloscar.terminationGracePeriodSeconds" $bloscar }}
  {{- with include "bloscar.initContainers" $bloscar | trim }}
  initContainers:
    {{- . | nindent 4 }}
  {{- end }}
  containers:
    - name: app
      image: registry.example.com/app:1.0
    {{- include "bloscar.containers" $bloscar | nindent 4 }}
  {{- with include "bloscar.volumes" $bloscar | trim }}
  volumes:
    {{- . | nindent 4 }}
  {{- end }}
{{- end }}
YAML
render_and_validate "outbound role, native" "$ADOPTER" native "$NEWEST" \
    --set ciRole=outbound --set ciForward=triton-bloscar.models.svc:9440
render_and_validate "both roles in one sidecar, classic" "$ADOPTER" classic 1.27 \
    --set ciRole=both --set bloscar.sidecar.type=classic --set bloscar.sidecar.outbound.forward=peer-bloscar:9440
render_and_validate "both roles with TLS both ways, classic" "$ADOPTER" classic "$NEWEST" \
    --set ciRole=both --set bloscar.sidecar.type=classic --set bloscar.sidecar.outbound.forward=peer-bloscar:9440 \
    --set bloscar.tls.inbound.secretName=server-tls --set bloscar.tls.outbound.secretName=peer-ca \
    --set bloscar.tls.outbound.clientCert=true

echo "== every rendered sidecar environment, through bloscar's own configuration parser"
check "BLOSCAR_* environments parse (examples/config_check.rs)" \
    cargo run --quiet --locked --example config_check -- "$WORK"/env/*/*.env

echo "== what must be rejected"
must_fail "outbound role without a forward address" "sidecar.outbound.forward .* is required" \
    "$HELM" template bloscar-ci "$ADOPTER" --set ciRole=outbound
must_fail "a role the sidecar does not have" "role must be inbound, outbound or both" \
    "$HELM" template bloscar-ci "$ADOPTER" --set ciRole=sideways
cat >"$WORK/wrong-type.yaml" <<'YAML'
sidecar:
  ports:
    admin: "9449"
YAML
must_fail "values: wrong type (sidecar.ports.admin: \"9449\")" "at '/sidecar/ports/admin': got string, want integer" \
    "$HELM" template bloscar-ci "$CHART" -f "$WORK/wrong-type.yaml"
cat >"$WORK/unknown-key.yaml" <<'YAML'
config:
  codecs: zstd
YAML
must_fail "values: unknown key (config.codecs)" "additional properties 'codecs' not allowed" \
    "$HELM" template bloscar-ci "$CHART" -f "$WORK/unknown-key.yaml"
must_fail "values: unknown key in the adopting chart (bloscar.sidecar.replicas)" \
    "additional properties 'replicas' not allowed" \
    "$HELM" template bloscar-ci "$ADOPTER" --set bloscar.sidecar.replicas=2
must_fail "values: sidecar.type outside native|classic" "at '/sidecar/type'" \
    "$HELM" template bloscar-ci "$CHART" --set sidecar.type=sidecar
must_fail "values: codec setting that bloscar cannot parse" "at '/config/codec'" \
    "$HELM" template bloscar-ci "$CHART" --set config.codec=lz4:11
must_fail "TLS: allowed SANs without client certificates" "tls.inbound.allowedSans needs tls.inbound.clientAuth" \
    "$HELM" template bloscar-ci "$CHART" -f "$CHART/ci/native-example-values.yaml" \
    --set tls.inbound.secretName=server-tls --set 'tls.inbound.allowedSans={spiffe://td/ns/a/sa/b}'
must_fail "TLS: a client certificate without the outbound Secret" "tls.outbound.clientCert needs tls.outbound.secretName" \
    "$HELM" template bloscar-ci "$CHART" -f "$CHART/ci/native-example-values.yaml" --set tls.outbound.clientCert=true
must_fail "values: TLS Secret name that is not a Secret name" "at '/tls/inbound/secretName'" \
    "$HELM" template bloscar-ci "$CHART" --set tls.inbound.secretName=Server_TLS
must_fail "values: allowed SAN list with a comma inside a name" "at '/tls/inbound/allowedSans/0'" \
    "$HELM" template bloscar-ci "$CHART" --set-json 'tls.inbound.allowedSans=["a.example,b.example"]'
"$HELM" template bloscar-ci "$CHART" -f "$CHART/ci/native-example-mtls-values.yaml" |
    sed 's|mountPath: /etc/bloscar/tls/inbound|mountPath: /etc/bloscar/elsewhere|' >"$WORK/unmounted-tls.yaml"
must_fail "chart rule: TLS files outside any mounted volume" "BLOSCAR_INBOUND_TLS_CERT .* is not under a mounted volume" \
    "$TOOLS/python" scripts/k8s/validate.py --kube-version "$NEWEST" --sidecar-type native "$WORK/unmounted-tls.yaml"
must_fail "PodMonitor without pods to select" "needs metrics.podMonitor.selector" \
    "$HELM" template bloscar-ci "$CHART" --set metrics.podMonitor.enabled=true
"$HELM" template bloscar-ci "$CHART" --kube-version 1.27.0 -f "$CHART/ci/native-example-values.yaml" \
    >"$WORK/native-1.27.yaml"
must_fail "native sidecar against Kubernetes 1.27 (no restartPolicy on containers)" "'restartPolicy' was unexpected" \
    "$TOOLS/python" scripts/k8s/validate.py --kube-version 1.27 --sidecar-type native "$WORK/native-1.27.yaml"

"$HELM" template bloscar-ci "$CHART" -f "$CHART/ci/native-example-values.yaml" |
    sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' >"$WORK/writable-root.yaml"
must_fail "chart rule: sidecar with a writable root filesystem" "securityContext.readOnlyRootFilesystem must be true" \
    "$TOOLS/python" scripts/k8s/validate.py --kube-version "$NEWEST" --sidecar-type native "$WORK/writable-root.yaml"
"$HELM" template bloscar-ci "$CHART" -f "$CHART/ci/native-example-values.yaml" \
    --set-json 'sidecar.extraEnv=[{"name":"BLOSCAR_CODECS","value":"lz4"}]' >"$WORK/unknown-variable.yaml"
must_fail "chart rule: a BLOSCAR_* variable that src/config.rs does not define" "variables not in src/config.rs: BLOSCAR_CODECS" \
    "$TOOLS/python" scripts/k8s/validate.py --kube-version "$NEWEST" --sidecar-type native "$WORK/unknown-variable.yaml"

"$HELM" template bloscar-ci "$CHART" -f "$CHART/ci/native-example-values.yaml" \
    --set-string config.maxMessageBytes=5GiB >"$WORK/too-large.yaml"
"$TOOLS/python" scripts/k8s/validate.py --kube-version "$NEWEST" --sidecar-type native \
    --env-dir "$WORK/env-too-large" "$WORK/too-large.yaml" >/dev/null
must_fail "configuration parser: a message limit above 4 GiB - 1" "BLOSCAR_MAX_MESSAGE_BYTES: invalid value \"5GiB\"" \
    cargo run --quiet --locked --example config_check -- "$WORK"/env-too-large/*.env

echo "k8s: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
