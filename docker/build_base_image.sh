#!/bin/sh
# Builds, on this machine, the base image the Dockerfile names: python:3.10-slim-bookworm.
#
# Why a home-made base: no container registry can be reached from the machines this project is
# built on, so the official image cannot be pulled. This makes an image of the same name and
# the same shape (Debian bookworm, CPython 3.10 in /usr/local, pip) from two local sources:
#   - Debian bookworm from the apt mirror this machine uses (debootstrap, minbase variant);
#   - CPython 3.10.13 as pyenv built it on this machine (Debian bookworm ships only 3.11; Rasa
#     3.6 needs 3.8-3.10), copied to /usr/local without pyenv's site-packages.
# Where the registry is reachable, skip this: `docker pull python:3.10-slim-bookworm` gives the
# official image, and the Dockerfile works unchanged on it.
set -eu

BASE_IMAGE=${BASE_IMAGE:-python:3.10-slim-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON_PREFIX=${PYTHON_PREFIX:-$(pyenv prefix 3.10.13 2>/dev/null || echo /root/.pyenv/versions/3.10.13)}
# The shared libraries CPython's extension modules link to (ssl, sqlite3, ctypes, readline...).
RUNTIME_PACKAGES=ca-certificates,tzdata,libssl3,libsqlite3-0,libffi8,zlib1g,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libuuid1,libgdbm6,libexpat1,libtirpc3,libcrypt1

test -x "$PYTHON_PREFIX/bin/python3.10" || {
    echo "error: no CPython 3.10 at $PYTHON_PREFIX (set PYTHON_PREFIX)" >&2; exit 1; }
command -v debootstrap >/dev/null || {
    echo "error: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/ringback-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include="$RUNTIME_PACKAGES" bookworm "$rootfs" "$MIRROR"

# CPython into /usr/local, as the official image has it. Its rpath names pyenv's directory,
# which does not exist in the image, so the loader finds libpython3.10 through ldconfig.
for part in bin include lib; do
    mkdir -p "$rootfs/usr/local/$part"
done
cp -a "$PYTHON_PREFIX/bin/." "$rootfs/usr/local/bin/"
cp -a "$PYTHON_PREFIX/include/." "$rootfs/usr/local/include/"
cp -a "$PYTHON_PREFIX"/lib/libpython3* "$rootfs/usr/local/lib/"
mkdir -p "$rootfs/usr/local/lib/python3.10"
tar -C "$PYTHON_PREFIX/lib/python3.10" --exclude=./site-packages --exclude='__pycache__' -cf - . \
    | tar -C "$rootfs/usr/local/lib/python3.10" -xf -
mkdir -p "$rootfs/usr/local/lib/python3.10/site-packages"
# pyenv's scripts (pip3, idle...) carry its path in their #! line: pip comes from ensurepip below.
rm -f "$rootfs"/usr/local/bin/pip* "$rootfs"/usr/local/bin/idle* "$rootfs"/usr/local/bin/pydoc* \
      "$rootfs"/usr/local/bin/2to3*
ln -sf python3.10 "$rootfs/usr/local/bin/python3"
ln -sf python3.10 "$rootfs/usr/local/bin/python"
chroot "$rootfs" /sbin/ldconfig
chroot "$rootfs" /usr/local/bin/python3.10 -m ensurepip --default-pip
chroot "$rootfs" /usr/local/bin/python3.10 -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib'
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "local stand-in for $BASE_IMAGE: debootstrap bookworm + pyenv CPython 3.10.13" \
    - "$BASE_IMAGE"
echo "built $BASE_IMAGE"
