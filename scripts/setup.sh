#!/usr/bin/env bash
# One-time, idempotent set-up used by `make train` and `make test`:
#   1. a virtual environment in .venv (override with VENV=...)
#   2. torch, pinned (TORCH_SPEC, default torch==2.13.0; see README "GPU install")
#   3. the project itself, editable, with the dev extras
#   4. the default dataset, the emoji font, the Wesnoth unit sprites (the `wesnoth` colour
#      dataset) and chromium (the browser the report tests open report.html in) from Debian's
#      packages, when we are root on Debian; otherwise ganforge downloads Fashion-MNIST itself
#      (with checksums) on first use, `--data wesnoth` says what to install, and the browser
#      test skips. (The `avatars` colour dataset needs no package: the dev extra installs
#      DiceBear and resvg, and ganforge renders it.)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-dev}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
stamp="$VENV/.ganforge-setup"
want="$TORCH_SPEC|$EXTRAS|$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # torch first and pinned: an unpinned torch pulled in as a dependency would fetch the
  # multi-GB CUDA build; once the pin is satisfied pip leaves torch alone.
  echo "[setup] installing $TORCH_SPEC"
  $PIP install -q "$TORCH_SPEC"
  echo "[setup] installing ganforge[$EXTRAS]"
  $PIP install -q -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi

if [ "${GANFORGE_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  [ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
  [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
  # the emoji dataset's labels: the Unicode emoji groups of emoji-test.txt (ganforge/data/emoji.py)
  [ -f /usr/share/unicode/emoji/emoji-test.txt ] || need+=(unicode-data)
  if [ ${#need[@]} -gt 0 ]; then
    echo "[setup] apt-get install ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
      || echo "[setup] apt-get failed; ganforge will try to download datasets on first use"
  fi
  # the Wesnoth sprites (146 MB download) on their own: a failure costs only --data wesnoth
  # (its tests then use a sprite tree made on the fly)
  if ! ls -d /usr/share/games/wesnoth/*/data/core/images/units >/dev/null 2>&1; then
    echo "[setup] apt-get install wesnoth-1.16-data"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wesnoth-1.16-data >/dev/null) \
      || echo "[setup] apt-get install wesnoth-1.16-data failed; --data wesnoth will say so"
  fi
  # chromium on its own: a failure here must not cost the dataset (the report's browser test
  # then skips, or fails under GANFORGE_REQUIRE_BROWSER=1 as in .ci/run)
  if [ ! -x /usr/bin/chromium ]; then
    echo "[setup] apt-get install chromium"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "[setup] apt-get install chromium failed; the report's browser test will skip"
  fi
fi
echo "[setup] ready: $VENV/bin/ganforge"
