#!/bin/sh
# `make image`: the Ringback image (docker/Dockerfile), tagged $IMAGE (default ringback:latest).
#  1. The base image python:3.10-slim-bookworm: pulled if a registry answers, else made here
#     by docker/build_base_image.sh (see there why and how).
#  2. build/wheels: every runtime dependency as a wheel, at the versions installed in .venv
#     (the ones the tests ran with), so the image build needs no network.
#  3. docker build, with the trained model (models/ringback.tar.gz) baked in.
set -eu
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-ringback:latest}
BASE_IMAGE=python:3.10-slim-bookworm

test -f models/ringback.tar.gz || { echo "error: no model; run 'make train'" >&2; exit 1; }
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    docker pull "$BASE_IMAGE" || docker/build_base_image.sh
fi

rm -rf build/wheels
mkdir -p build/wheels
.venv/bin/pip freeze --exclude-editable > build/constraints.txt
.venv/bin/pip wheel --quiet --wheel-dir build/wheels --constraint build/constraints.txt \
    . "setuptools>=68" wheel
rm -f build/wheels/ringback-*.whl  # the project itself is installed from its source tree

# The classic builder: the Dockerfile needs nothing newer, and it works without buildx.
DOCKER_BUILDKIT=0 docker build --file docker/Dockerfile --tag "$IMAGE" .
echo "built $IMAGE"
