#!/usr/bin/env bash
# The virtual environment of the compatibility checks: torch 2.5.1 (the libtorch of nn~ 1.6's
# releases), torchaudio 2.5.1 and neutone-sdk 1.5.2 (which needs torchaudio, and torchaudio pins
# torch), torchddsp's runtime dependencies and this clone of torchddsp (editable, no deps).
#
# Usage: scripts/compat_env.sh  -> prints the environment's python as its last line.
# Made once outside the clone, at ${TORCHDDSP_COMPAT_ENV:-~/.cache/torchddsp/compat-torch2.5.1},
# then reused while it imports these versions and this clone; repaired or rebuilt otherwise.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
env_dir=${TORCHDDSP_COMPAT_ENV:-$HOME/.cache/torchddsp/compat-torch2.5.1}
mkdir -p "$(dirname "$env_dir")"
env_dir=$(cd "$(dirname "$env_dir")" && pwd -P)/$(basename "$env_dir")
python=$env_dir/bin/python
pins=(torch==2.5.1 torchaudio==2.5.1 neutone-sdk==1.5.2)
pip=("$python" -m pip install -q --disable-pip-version-check)

fail() {
    echo "compat_env.sh: $1" >&2
    exit 1
}

# "pins": the pinned versions import; "all": so does torchddsp, from this clone.
check() {
    [ -x "$python" ] && "$python" - "$1" "$repo" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
from pathlib import Path

import neutone_sdk  # noqa: F401
import torch
import torchaudio  # noqa: F401

for name, expected in (("torch", "2.5.1"), ("torchaudio", "2.5.1"), ("neutone-sdk", "1.5.2")):
    assert version(name).split("+")[0] == expected, (name, version(name))
assert torch.tensor([1.0, 2.0]).sum().item() == 3.0
if sys.argv[1] == "all":
    import torchddsp

    assert Path(torchddsp.__file__).resolve().is_relative_to(Path(sys.argv[2]) / "src")
EOF
}

runtime_dependencies() { # torchddsp's own, from pyproject.toml, one a line
    "$python" - "$repo/pyproject.toml" <<'EOF'
import sys

try:
    import tomllib
except ImportError:  # Python 3.10: pip carries the same parser
    from pip._vendor import tomli as tomllib

with open(sys.argv[1], "rb") as file:
    print("\n".join(tomllib.load(file)["project"]["dependencies"]))
EOF
}

case "$env_dir/" in
"$repo"/*) fail "TORCHDDSP_COMPAT_ENV=$env_dir is inside the clone; choose a folder outside it" ;;
esac
exec 9>"$env_dir.lock" # one builder at a time
if command -v flock >/dev/null; then flock 9; fi

if ! check all; then
    if ! check pins; then
        if [ -e "$env_dir" ] && [ ! -f "$env_dir/pyvenv.cfg" ]; then
            fail "$env_dir exists and is no virtual environment: remove it or set TORCHDDSP_COMPAT_ENV"
        fi
        echo "compat_env.sh: making $env_dir (torch 2.5.1: a few GB to download once)" >&2
        rm -rf "$env_dir"
        python3 -m venv "$env_dir"
    fi
    mapfile -t dependencies < <(runtime_dependencies)
    # One resolution: the pins hold torch at 2.5.1 while the dependencies settle around it.
    "${pip[@]}" "${pins[@]}" "${dependencies[@]}"
    "${pip[@]}" --no-deps -e "$repo"
    check all || fail "$env_dir does not import torch 2.5.1, neutone-sdk 1.5.2 and $repo's torchddsp"
fi
echo "$python"
