#!/usr/bin/env bash
# Installs, where apt is available, the system packages the project needs: the libraries
# that open3d's wheel links against, and Debian's chromium, in which a test opens the
# HTML report. Does nothing when they are already present, so it is safe on every `make`.
set -euo pipefail
needed=(libusb-1.0-0 libgomp1 libgl1 chromium)
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
if ! command -v apt-get >/dev/null; then
  echo "warning: no apt-get; install ${missing[*]} (or your system's equivalents):" \
       "open3d needs the libraries; without chromium the HTML report test is skipped" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
