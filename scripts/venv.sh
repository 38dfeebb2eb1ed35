# Sourced by scripts/setup and scripts/bench.
# make_venv DIR PYTHON REQUIREMENTS: (re)create DIR when its interpreter or
# requirements changed; otherwise leave it as it is.
make_venv() {
  local dir=$1 python=$2 requirements=$3
  local stamp="$dir/.ha_ingestor_stamp"
  local want
  want="$("$python" -c 'import sys; print(sys.version)') $(cat "$requirements" requirements_test.txt | sha256sum | cut -c1-64)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  rm -rf "$dir"
  local root
  root=$(cd "$(dirname "$python")/../.." && pwd)
  if [ -d "$root/usr/share/python-wheels" ] && [[ "$python" == "${HA_INGESTOR_CACHE:-$HOME/.cache/ha_ingestor}"/* ]]; then
    # The private Debian interpreter's ensurepip looks for wheels on the host:
    # bootstrap pip from the root's own wheel instead.
    "$python" -m venv --without-pip "$dir"
    local wheel
    wheel=$(ls "$root"/usr/share/python-wheels/pip-*.whl | head -n 1)
    "$dir/bin/python" "$wheel/pip" install -q "$wheel"
  else
    "$python" -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
}

