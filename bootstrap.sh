#!/bin/sh
# The README's first step: a virtual environment in the checkout (.venv/) with the kit installed.
#
# Works on a stock Debian/Ubuntu with the distribution's own Python, which is "externally
# managed" (PEP 668: `pip install` into it is refused) and, on minimal images, has no venv or
# pip at all: as root, python3-venv is installed through apt where it is missing. Idempotent:
# an existing .venv is reused, and pip only installs what is not there at its pin.
#
# Environment: PYTHON (default python3) picks the interpreter the environment is made from.
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=.venv
# pip itself is pinned too: the build cache's keys include its version (labkit.images.sources)
PIP_VERSION=23.2.1

say() { echo "[bootstrap] $*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "no $PYTHON: install Python >= 3.11 (Debian/Ubuntu: apt-get install python3)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    # Debian splits venv and ensurepip out of python3 (package python3-venv)
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "$PYTHON lacks the venv module: install python3-venv (as root: apt-get install python3-venv)" >&2
        exit 1
    fi
    say "apt-get install python3-venv ($PYTHON has no venv/ensurepip)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends python3-venv
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "$PYTHON -m venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ "$("$VENV/bin/python" -m pip --version | cut -d' ' -f2)" != "$PIP_VERSION" ]; then
    say "pip install pip==$PIP_VERSION"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "pip==$PIP_VERSION"
fi
say "pip install -e '.[dev]' into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
say "ready: $VENV/bin/invoke"
