# Sourced by the benchmark scripts whose Python imports bench/report.py,
# which draws its charts with matplotlib.
#
# bench_python: makes sure target/bench-venv holds matplotlib (the one
# version report.py is checked with) and sets $bench_python to that
# environment's interpreter. Needs $root.
bench_python() {
  local version=3.11.2 venv="$root/target/bench-venv"
  if ! "$venv/bin/python" -c "import matplotlib, sys; sys.exit(matplotlib.__version__ != '$version')" 2>/dev/null; then
    echo "installing matplotlib $version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "matplotlib==$version"
  fi
  bench_python="$venv/bin/python"
}
