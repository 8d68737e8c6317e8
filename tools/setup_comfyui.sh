#!/usr/bin/env bash
# Make the ComfyUI that tests/test_comfyui_integration.py runs against: a ComfyUI checkout and a CPU
# venv (torch 2.13.0 CPU wheels) with ComfyUI's and this pack's requirements. Not needed by the
# default CI (the integration test is skipped without COMFYUI_PATH).
#
#   tools/setup_comfyui.sh [DEST]          # default DEST: ./.comfyui (git-ignored by nothing: pick a folder)
#   export COMFYUI_PATH=DEST/ComfyUI COMFYUI_PYTHON=DEST/venv/bin/python
#   python -m pytest tests/test_comfyui_integration.py
#
# Env: COMFYUI_REPO (default https://github.com/comfyanonymous/ComfyUI.git)
#      COMFYUI_REF  (default 783545f689a0af730065994b46b382ae24844c99, "0.33.0", the version the pack
#                    was proven against; any later ComfyUI with comfy_api.latest should work)
#      TORCH_VERSION (default 2.13.0), PYTHON (default python3, >= 3.10)
#      TORCH_INDEX  (default https://download.pytorch.org/whl/cpu; empty = only the configured pip indexes)
#      WITH_PLAYWRIGHT=1 also installs playwright (the screenshot tool drives Debian's chromium; no
#                    browser download)
# The server is then started by the test itself (main.py --cpu --listen 127.0.0.1 --base-directory TMP),
# so the checkout stays untouched.
set -euo pipefail
PACK="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$(mkdir -p "${1:-$PACK/.comfyui}" && cd "${1:-$PACK/.comfyui}" && pwd)"
REPO="${COMFYUI_REPO:-https://github.com/comfyanonymous/ComfyUI.git}"
REF="${COMFYUI_REF:-783545f689a0af730065994b46b382ae24844c99}"
TORCH="${TORCH_VERSION:-2.13.0}"
PY="${PYTHON:-python3}"
TORCH_INDEX="${TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
IDX=()
[ -n "$TORCH_INDEX" ] && IDX=(--extra-index-url "$TORCH_INDEX")

if [ ! -d "$DEST/ComfyUI/.git" ]; then
  git clone --quiet "$REPO" "$DEST/ComfyUI"
fi
git -C "$DEST/ComfyUI" fetch --quiet origin "$REF" 2>/dev/null || true
git -C "$DEST/ComfyUI" checkout --quiet "$REF"

if [ ! -x "$DEST/venv/bin/python" ]; then
  "$PY" -m venv "$DEST/venv"
fi
VPY="$DEST/venv/bin/python"
"$VPY" -m pip install --quiet --upgrade pip
# CPU torch first (an unpinned torch from PyPI pulls GBs of CUDA wheels), then pin it for the rest
"$VPY" -m pip install --quiet "torch==$TORCH" torchvision torchaudio "${IDX[@]}"
echo "torch==$TORCH" > "$DEST/constraints.txt"
"$VPY" -m pip install --quiet -r "$DEST/ComfyUI/requirements.txt" -c "$DEST/constraints.txt" "${IDX[@]}"
"$VPY" -m pip install --quiet -r "$PACK/requirements.txt" -c "$DEST/constraints.txt"
if [ "${WITH_PLAYWRIGHT:-0}" = "1" ]; then
  "$VPY" -m pip install --quiet playwright
fi

# smoke: ComfyUI imports its V3 API and the pack's root module loads its nodes
"$VPY" - "$DEST/ComfyUI" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import comfy_api.latest  # noqa: F401  (the V3 schema API the pack needs)
print("comfy_api.latest: ok")
EOF
echo "ComfyUI ready. Run the server tests with:"
echo "  export COMFYUI_PATH=$DEST/ComfyUI COMFYUI_PYTHON=$VPY"
echo "  python -m pytest tests/test_comfyui_integration.py"
