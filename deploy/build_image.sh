#!/bin/sh
# The container image of deploy/kubernetes/Containerfile, built and smoke-tested with the container
# runtime there is (podman, else docker, else buildah to build only):
#   build   -f deploy/kubernetes/Containerfile -t easload:VERSION   (VERSION from pyproject.toml)
#   run     easload:VERSION --version        must name the compiled codec
#   run     easload:VERSION run smoke --duration 3s --devices 20 -q --metrics-listen ''   must exit 0
# Usage: deploy/build_image.sh [TAG]   (default easload:<version>); exit 0 when built and tested,
# 1 on a failure, 3 when no container runtime (or no engine behind it) is available here.
set -eu
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
tag=${1:-easload:$version}

runtime=
for candidate in podman docker buildah; do
    if command -v "$candidate" >/dev/null 2>&1; then
        case "$candidate" in
            docker) docker info >/dev/null 2>&1 || { echo "build_image.sh: docker is installed but no engine answers" >&2; continue; } ;;
        esac
        runtime=$candidate
        break
    fi
done
if [ -z "$runtime" ]; then
    echo "build_image.sh: no container runtime (podman, docker with an engine, buildah) here: image not built" >&2
    exit 3
fi

echo "== $runtime build -f deploy/kubernetes/Containerfile -t $tag ." >&2
if [ "$runtime" = buildah ]; then
    buildah bud -f deploy/kubernetes/Containerfile -t "$tag" .
    echo "build_image.sh: built $tag with buildah; no runtime here to smoke-test it" >&2
    exit 0
fi
"$runtime" build -f deploy/kubernetes/Containerfile -t "$tag" .

echo "== $runtime run --rm $tag --version" >&2
version_line=$("$runtime" run --rm "$tag" --version)
echo "$version_line"
case "$version_line" in
    *"codec: cython"*) ;;
    *) echo "build_image.sh: the image does not use the compiled codec: $version_line" >&2; exit 1 ;;
esac
echo "== $runtime run --rm $tag run smoke --duration 3s --devices 20" >&2
"$runtime" run --rm "$tag" run smoke --duration 3s --devices 20 -q --metrics-listen ''
echo "== ok: $tag built; --version and a 3-second smoke run pass" >&2
