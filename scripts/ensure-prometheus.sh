#!/usr/bin/env bash
# The end-to-end alerting test (tests/reliability/test_prometheus_alertmanager.py) runs
# Debian's real `prometheus` and `prometheus-alertmanager` against a running Sluice.
# Install them when missing and apt is usable (CI runs as root); otherwise the test skips
# and says why. Best effort: never fails the build by itself.
#
# The packages' maintainer scripts would start system services on :9090/:9093. The test
# never uses those (it starts its own instances on free loopback ports with their own
# data directories), so no service is started here: when the image has no policy-rc.d
# (Docker images usually do), a temporary one refuses service starts during the install.
set -u
have() { command -v "$1" >/dev/null 2>&1; }
if have prometheus && { have prometheus-alertmanager || have alertmanager; }; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! have apt-get; then
  echo "prometheus: not installed and cannot install it here; the alerting test will skip"
  exit 0
fi
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# temporary, from scripts/ensure-prometheus.sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
install_packages() {
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 \
    prometheus prometheus-alertmanager >/dev/null 2>&1
}
if ! install_packages; then
  apt-get update -qq >/dev/null 2>&1
  install_packages || echo "prometheus: install failed; the alerting test will skip"
fi
have prometheus && echo "prometheus: $(prometheus --version 2>&1 | head -1)"
have prometheus-alertmanager && echo "alertmanager: $(prometheus-alertmanager --version 2>&1 | head -1)"
exit 0
