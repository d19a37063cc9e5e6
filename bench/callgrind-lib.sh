# Shared by the bench/*-instructions.sh scripts (sourced, not run):
# checks for valgrind, builds a resolver bench and sets $bin to its
# executable, and makes a scratch directory $work removed on exit.
#   bench_setup BENCH_NAME
bench_setup() {
  command -v valgrind >/dev/null || { echo "needs valgrind (Debian: apt-get install valgrind)" >&2; exit 69; }
  bin=$(cargo bench -p signpost-resolver --bench "$1" --no-run --message-format=json 2>/dev/null \
    | grep -o "\"executable\":\"[^\"]*$1[^\"]*\"" | tail -1 | cut -d'"' -f4)
  [ -x "$bin" ] || { echo "could not build the $1 bench" >&2; exit 70; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
}
