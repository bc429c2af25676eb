# Sourced by test.sh, quick_start.sh and .ci/run: create or reuse .venv and install requirements.txt
# into it when requirements.txt changed since the last install. Then activate it.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${VENV:-$_root/.venv}"
if [ ! -x "$_venv/bin/python" ]; then
    echo "[setup] creating virtual environment $_venv"
    python3 -m venv "$_venv" || { echo "[setup] failed: python3 -m venv $_venv" >&2; return 1 2>/dev/null || exit 1; }
fi
_stamp="$_venv/.requirements.sha256"
_want="$(sha256sum "$_root/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
    echo "[setup] installing requirements.txt into $_venv (the first time takes several minutes)"
    "$_venv/bin/python" -m pip install -q --upgrade pip setuptools wheel &&
    "$_venv/bin/python" -m pip install -q -r "$_root/requirements.txt" &&
    echo "$_want" > "$_stamp" || { echo "[setup] failed: pip install -r requirements.txt" >&2; return 1 2>/dev/null || exit 1; }
fi
# shellcheck disable=SC1091
. "$_venv/bin/activate"
