#!/usr/bin/env bash
# Make sure Debian's dataset-fashion-mnist (real evaluation images, MIT licence) is installed.
# Usage: ensure_fashion_mnist.sh [--optional]   (--optional: warn instead of failing when it cannot be installed)
set -u
dir="${SYNTHSIGHT_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
if [ -f "$dir/t10k-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian package dataset-fashion-mnist (real evaluation data)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null && exit 0
fi
msg="Fashion-MNIST is missing: run 'sudo apt-get update && sudo apt-get install dataset-fashion-mnist', or set SYNTHSIGHT_FASHION_MNIST_DIR to a folder holding its four idx .gz files."
if [ "${1:-}" = "--optional" ]; then
  echo "warning: $msg Tests that need it are skipped." >&2
  exit 0
fi
echo "error: $msg" >&2
exit 1
