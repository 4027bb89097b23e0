#!/usr/bin/env bash
# Set up the benchmark on this machine: Debian data package (where apt is available),
# a virtual environment in .venv and the pinned packages. Safe and fast to run again:
# each step is skipped when already done.
#   bash setup.sh          runtime packages
#   bash setup.sh --dev    also the test packages
set -euo pipefail
cd "$(dirname "$0")"

requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt

# 1. Fashion-MNIST, the embedded default data set (Debian package dataset-fashion-mnist).
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo"
  echo "setup: installing dataset-fashion-mnist with apt-get"
  if ! { $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
         { $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; }; then
    echo "setup: could not install dataset-fashion-mnist; pass --data-root DIR (see docs/datasets.md) instead" >&2
  fi
fi

# 2. The virtual environment (Python 3.11: the pinned torch build is on disk for it).
python=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$python" -m venv .venv

# 3. Pinned packages, every indirect one at the version of requirements-lock.txt (so two setups
#    install the same bytes; `python -m benchmark.tools.lock` rewrites it), reinstalled only when
#    the requirement files change.
stamp=.venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$requirements" .txt)
if [ ! -e "$stamp" ]; then
  echo "setup: installing $requirements into .venv (first time: several minutes)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$requirements" -c requirements-lock.txt
  touch "$stamp"
fi
echo "setup: ready (.venv/bin/python -m benchmark --help)"
