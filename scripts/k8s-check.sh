#!/usr/bin/env bash
# Checks deploy/k8s against Kubernetes' own schemas (no cluster needed), with
# kubernetes-validate from PyPI in a virtualenv under target/tools. A manifest broken on
# purpose must fail, so that a validator that checks nothing cannot pass.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/kubernetes-validate
if [[ ! -x $venv/bin/kubernetes-validate ]]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
      echo "k8s-check.sh: installing python3-venv" >&2
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      rm -rf "$venv"
      python3 -m venv "$venv"
    else
      echo "k8s-check.sh: python3 -m venv does not work here: install python3-venv" >&2
      exit 2
    fi
  fi
  "$venv/bin/pip" install -q 'kubernetes-validate==1.37.*'
fi
"$venv/bin/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml
broken=$(mktemp)
trap 'rm -f "$broken"' EXIT
sed 's/^  replicas: 4$/  replicaz: 4/' deploy/k8s/sut.yaml >"$broken"
if "$venv/bin/kubernetes-validate" --strict --quiet "$broken" >/dev/null 2>&1; then
  echo "k8s-check.sh: the validator passed a manifest with a misspelt field" >&2
  exit 1
fi
echo "k8s-check.sh: deploy/k8s/*.yaml valid against Kubernetes 1.37 (strict)"
