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

# Made again only when .venv changed: the same wheels keep Docker's cached layer of them.
mkdir -p build
.venv/bin/pip freeze --exclude-editable > build/constraints.new
if ! cmp -s build/constraints.new build/constraints.txt || [ ! -d build/wheels ] \
        || ! cmp -s pyproject.toml build/pyproject.toml; then
    rm -rf build/wheels
    mkdir -p build/wheels
    .venv/bin/pip wheel --quiet --wheel-dir build/wheels --constraint build/constraints.new \
        . "setuptools>=68" wheel
    rm -f build/wheels/ringback-*.whl  # the project itself is installed from its source tree
    cp pyproject.toml build/pyproject.toml
fi
mv build/constraints.new build/constraints.txt

# The classic builder: the Dockerfile needs nothing newer, and it works without buildx.
DOCKER_BUILDKIT=0 docker build --file docker/Dockerfile --tag "$IMAGE" .
echo "built $IMAGE"
