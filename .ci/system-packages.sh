#!/usr/bin/env bash
# System (Debian) packages the tests need:
#   libwbxml2-utils -- xml2wbxml / wbxml2xml, the independent WBXML implementation
#                      tests/test_wbxml_libwbxml.py compares the codec with.
# Idempotent: does nothing when the tools are already on PATH.  Uses sudo only
# when not root and sudo exists; fails loudly when it cannot install.
set -euo pipefail

if command -v xml2wbxml >/dev/null 2>&1 && command -v wbxml2xml >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n env DEBIAN_FRONTEND=noninteractive"
else
    echo "system-packages.sh: need root or sudo to install libwbxml2-utils" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends libwbxml2-utils

command -v xml2wbxml >/dev/null 2>&1 && command -v wbxml2xml >/dev/null 2>&1
