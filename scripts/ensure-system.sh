#!/usr/bin/env bash
# Makes sure the system programs the platform needs are on the machine: redis-server always,
# chromium with --browser (the browser tests). Installs Debian's packages when running as root;
# otherwise prints the exact command to run and stops.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [[ "${1:-}" == "--browser" ]] && [[ ! -x /usr/bin/chromium ]]; then need+=(chromium); fi
[[ ${#need[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "missing: ${need[*]}. Install it, then run this again:" >&2
  echo "    sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
