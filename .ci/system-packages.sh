#!/usr/bin/env bash
# System (Debian) packages the tests need:
#   libwbxml2-utils -- xml2wbxml / wbxml2xml, the independent WBXML implementation
#                      tests/test_wbxml_libwbxml.py compares the codec with.
#   prometheus      -- /usr/bin/prometheus and promtool: the real server
#                      tests/test_prometheus_real.py scrapes a run with, and
#                      checks deploy/prometheus/prometheus.yml and the Grafana
#                      dashboard's queries against.
#   chromium        -- /usr/bin/chromium: the headless browser
#                      tests/test_htmlreport_browser.py renders the HTML report in.
#   openssl         -- the openssl command: the TLS tests make their CA, server and
#                      client certificates with it.
# Idempotent: does nothing when all the tools are already there (installs only
# the packages whose tools are missing).  Uses sudo only when not root and sudo
# exists; fails loudly when it cannot install.
set -euo pipefail

missing=()
if ! { command -v xml2wbxml && command -v wbxml2xml; } >/dev/null 2>&1; then
    missing+=(libwbxml2-utils)
fi
if ! { [ -x /usr/bin/prometheus ] && command -v promtool; } >/dev/null 2>&1; then
    missing+=(prometheus)
fi
if ! [ -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
if ! command -v openssl >/dev/null 2>&1; then
    missing+=(openssl)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n env DEBIAN_FRONTEND=noninteractive"
else
    echo "system-packages.sh: need root or sudo to install ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# chromium with its recommended packages (fonts), the others without
nonbrowser=()
for p in "${missing[@]}"; do [ "$p" = chromium ] || nonbrowser+=("$p"); done
if [ "${#nonbrowser[@]}" -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${nonbrowser[@]}"
fi
if [[ " ${missing[*]} " == *" chromium "* ]]; then
    $SUDO apt-get install -y -qq chromium
fi

command -v xml2wbxml >/dev/null 2>&1 && command -v wbxml2xml >/dev/null 2>&1 \
    && [ -x /usr/bin/prometheus ] && command -v promtool >/dev/null 2>&1 && [ -x /usr/bin/chromium ] \
    && command -v openssl >/dev/null 2>&1
