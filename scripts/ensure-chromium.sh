#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the browser tests (the dashboard's). Installs it
# from Debian when missing and this runs as root; otherwise says what to run. Prints its path.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  echo /usr/bin/chromium
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "ensure-chromium.sh: chromium is not installed; run as root or: apt-get install -y chromium" >&2
  exit 1
fi
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
echo /usr/bin/chromium
