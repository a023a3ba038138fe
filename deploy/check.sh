#!/bin/sh
# `make check-deploy`: the compose file and the Kubernetes manifests against their schemas,
# offline. The validators live in a virtualenv of their own (build/deploy-check): they need
# jsonschema and ruamel.yaml versions Rasa 3.6's pins exclude from .venv.
#   - kubernetes-validate (PyPI): each manifest against Kubernetes' OpenAPI schemas, strictly
#     (an unknown field is an error);
#   - check-jsonschema (PyPI): compose.yml against the Compose specification's schema.
set -eu
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TOOLS=build/deploy-check
if [ ! -x "$TOOLS/bin/kubernetes-validate" ] || [ ! -x "$TOOLS/bin/check-jsonschema" ]; then
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet "kubernetes-validate==1.37.0" "check-jsonschema==0.38.2"
fi
manifests=$(ls deploy/kubernetes/*.yaml | grep -v kustomization.yaml)
# shellcheck disable=SC2086 # one argument per manifest
"$TOOLS/bin/kubernetes-validate" --strict --quiet $manifests
"$TOOLS/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yml
# Every manifest is listed in the kustomization, so `kubectl apply -k` deploys all of them.
for manifest in $manifests; do
    grep -q "^  - $(basename "$manifest")\$" deploy/kubernetes/kustomization.yaml || {
        echo "error: $manifest is not in deploy/kubernetes/kustomization.yaml" >&2; exit 1; }
done
echo "deploy/: the manifests and the compose file validate"
