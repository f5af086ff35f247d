#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them.
#
# The tests need, beyond a Rust toolchain:
#   - `prometheus` and `promtool` (Debian's `prometheus` package): the dashboards are
#     proven against a real Prometheus and every /metrics passes `promtool check metrics`;
#   - root: the storage-fault tests mount a size-limited tmpfs, and the several-hosts
#     test makes network namespaces;
#   - python3 with venv: scripts/k8s-check.sh checks deploy/k8s with kubernetes-validate.
# Installing uses apt-get when a binary is missing (root on Debian or Ubuntu); on any
# other system install them yourself and this script only checks they are there.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for bin in prometheus promtool; do
  command -v "$bin" >/dev/null || missing+=("$bin")
done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "test.sh: installing Debian's prometheus (missing: ${missing[*]})" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "test.sh: ${missing[*]} not on PATH and this is not root on Debian:" \
      "install the prometheus package (it has promtool), then run this again" >&2
    exit 2
  fi
fi
if [[ $(id -u) != 0 ]]; then
  echo "test.sh: the storage-fault tests mount a tmpfs and need root: run as root" >&2
  exit 2
fi

scripts/k8s-check.sh
exec cargo test --workspace "$@"
