#!/usr/bin/env bash
# Set up DyNA in a virtual environment (default .venv), idempotently.
#
# Installs torch 2.13.0 unless the Python that runs this script already has a torch (then the
# environment reuses it), and DyNA itself in editable mode with its development and
# documentation tools. On Linux without an NVIDIA GPU (no nvidia-smi) it asks for the CPU
# build, 2.13.0+cpu, from PyTorch's CPU wheel index (plain PyPI serves the multi-GB CUDA build
# there); elsewhere it installs torch 2.13.0 from the configured index. Environment variables:
#   PYTHON           interpreter to build the environment from (default: python3)
#   DYNA_VENV        where the environment lives (default: .venv in the repository)
#   DYNA_TORCH       the torch requirement to install (default: as above)
#   TORCH_INDEX_URL  the only index to take torch from (default: as above)
#   DYNA_EXTRAS      the package's extras to install (default: dev,docs; the main job needs none)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=${DYNA_VENV:-.venv}
torch_version=2.13.0
torch_index_args=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  torch_requirement=${DYNA_TORCH:-torch==$torch_version}
  torch_index_args=(--index-url "$TORCH_INDEX_URL")
elif [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  # The CPU build. An extra index, not the only one: a local mirror or wheel folder that
  # already holds the +cpu wheel keeps working where PyTorch's index cannot be reached.
  torch_requirement=${DYNA_TORCH:-torch==$torch_version+cpu}
  torch_index_args=(--extra-index-url https://download.pytorch.org/whl/cpu)
else
  torch_requirement=${DYNA_TORCH:-torch==$torch_version}
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  # A torch the interpreter already has (system, conda or another venv) is reused: its
  # site directory is added to the new environment's path instead of installing torch again.
  if torch_site=$("$python" -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))" 2>/dev/null); then
    echo "setup: reusing the torch in $torch_site"
    venv_site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "$torch_site" >"$venv_site/_dyna_reused_torch.pth"
  fi
fi

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing $torch_requirement"
  "$venv/bin/pip" install --quiet "$torch_requirement" "${torch_index_args[@]}"
fi

# Reinstall only when the package metadata changed (the install is editable) or extras are
# asked for that the environment does not have yet.
extras=${DYNA_EXTRAS-dev,docs}
stamp="$venv/.dyna-installed"
fingerprint=$(cksum <pyproject.toml)
installed_extras=""
if [ -f "$stamp" ] && [ "$(head -n 1 "$stamp")" = "$fingerprint" ]; then
  installed_extras=$(sed -n 2p "$stamp")
  missing=""
  for extra in ${extras//,/ }; do
    case ",$installed_extras," in *",$extra,"*) ;; *) missing=yes ;; esac
  done
  [ -z "$missing" ] && extras=$installed_extras
else
  missing=yes
fi
if [ -n "$missing" ]; then
  [ -n "$installed_extras" ] && extras="$installed_extras,$extras"
  echo "setup: installing dyna${extras:+ with the extras $extras}"
  "$venv/bin/pip" install --quiet --editable ".${extras:+[$extras]}"
  printf '%s\n%s\n' "$fingerprint" "$extras" >"$stamp"
fi
# The tests run the Triton kernels in Triton's interpreter on the CPU; a CUDA build of torch
# brings its own triton, which is kept. 3.5.1 is the oldest triton the kernels support (torch 2.9).
case ",$extras," in
  *,dev,*)
    if ! "$venv/bin/python" -c "import triton" >/dev/null 2>&1; then
      echo "setup: installing triton 3.5.1 for the kernel tests"
      "$venv/bin/pip" install --quiet "triton==3.5.1"
    fi
    ;;
esac
"$venv/bin/python" -c "import dyna, torch; print(f'setup: dyna {dyna.__version__}, torch {torch.__version__}')"
# The commands are in the environment, not on PATH: the last line says how to reach them.
echo "setup: to put dyna on PATH in this shell, run: source $venv/bin/activate"
