#!/usr/bin/env bash
# Mutation testing of Gooni's core packages: plant one small bug at a time
# (a flipped comparison, a changed boundary, + for -) in the files that hold
# the core behaviours, run that package's tests, and count the bugs they let
# through. Prints, per package, the score and every surviving mutant.
#
#   scripts/mutation.sh              # every target below (about 15 minutes on 2 idle cores)
#   scripts/mutation.sh store        # one target, by its directory
#
# Not a CI step (too slow); the command a reviewer runs after touching a core
# package. The score per package is recorded in docs/RELIABILITY.md.
#
# Tool: gremlins (github.com/go-gremlins/gremlins), pinned below and run with
# `go run module@version`, so nothing is installed. It copies the module to a
# temporary directory per worker, applies one mutant at a time there and runs
# `go test -failfast` on the mutated package only; a mutant is KILLED when a
# test fails, LIVED when every test passes, TIMED OUT when the run takes longer
# than the timeout coefficient times the package's plain test run.
set -euo pipefail
cd "$(dirname "$0")/.."

GREMLINS="github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0"
WORKERS="${WORKERS:-2}"
# A mutant is stopped after COEFF x the package's clean coverage run (which
# gremlins measures once, with a warm build cache); a mutant's run also
# recompiles and relinks the package's test binary, so a small coefficient
# marks slow-but-passing runs TIMED OUT on a busy machine.
COEFF="${COEFF:-8}"

# directory | the files whose mutants count (everything else in the directory is excluded)
targets=(
  "store|tasks.go audit.go sessions.go"
  "server|auth.go throttle.go middleware.go"
  "internal/dispatch|dispatch.go reap.go"
  "internal/catalog|generate.go"
)

# Each mutant relinks and reruns a package's tests. The store's tests fsync
# (synchronous=FULL) and the dispatcher's and server's mostly wait on real
# time: temporary files on tmpfs and more parallel tests make each run a few
# times faster without changing what the tests check.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
# go vet already runs in CI; here it would only redo its checks per mutant.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-parallel=8 -vet=off"

only="${1:-}"
out_dir="$(mktemp -d "${TMPDIR:-/tmp}/gooni-mutation.XXXXXX")"
trap 'rm -rf "$out_dir"' EXIT

summary=()
start_all=$(date +%s)
for t in "${targets[@]}"; do
  dir="${t%%|*}"
  keep=" ${t#*|} "
  if [ -n "$only" ] && [ "$only" != "$dir" ]; then
    continue
  fi
  # gremlins can only exclude: exclude every non-test Go file of the
  # directory tree that is not kept (paths are relative to the directory).
  excludes=()
  while IFS= read -r f; do
    rel="${f#"$dir"/}"
    case "$keep" in *" $rel "*) continue ;; esac
    excludes+=(-E "^$(printf '%s' "$rel" | sed 's/[.]/\\./g')\$")
  done < <(find "$dir" -name '*.go' ! -name '*_test.go' | sort)

  log="$out_dir/$(echo "$dir" | tr / _).log"
  echo "== $dir (${keep# }): gremlins with $WORKERS workers, timeout coefficient $COEFF"
  t0=$(date +%s)
  go run "$GREMLINS" unleash --workers "$WORKERS" --timeout-coefficient "$COEFF" \
    "${excludes[@]}" "./$dir" >"$log" 2>&1 || true
  secs=$(( $(date +%s) - t0 ))

  killed=$(grep -c '^ *KILLED' "$log" || true)
  lived=$(grep -c '^ *LIVED' "$log" || true)
  timedout=$(grep -c '^ *TIMED OUT' "$log" || true)
  notcov=$(grep -c '^ *NOT COVERED' "$log" || true)
  viable=$(grep -c '^ *NOT VIABLE' "$log" || true)
  if [ $((killed + lived + timedout)) -eq 0 ]; then
    echo "no mutant ran; gremlins said:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  # The score is gremlins' efficacy, killed / (killed + lived): a timed-out
  # mutant is counted apart (the run was cut, whether the tests would have
  # caught it is unknown) and listed, so a busy machine cannot inflate it.
  score=$(awk -v k="$killed" -v l="$lived" 'BEGIN { if (k + l == 0) print "n/a"; else printf "%.1f", 100 * k / (k + l) }')
  echo "   killed $killed, timed out $timedout, lived $lived, not covered $notcov, not viable $viable: score ${score}% in ${secs}s"
  if [ "$lived" -gt 0 ]; then
    echo "   surviving mutants:"
    grep '^ *LIVED' "$log" | sed "s|^ *LIVED *|     |; s| at | $dir/|"
  fi
  if [ "$timedout" -gt 0 ]; then
    echo "   timed out (not counted):"
    grep '^ *TIMED OUT' "$log" | sed "s|^ *TIMED OUT *|     |; s| at | $dir/|"
  fi
  if [ "$notcov" -gt 0 ]; then
    echo "   not covered by any test:"
    grep '^ *NOT COVERED' "$log" | sed "s|^ *NOT COVERED *|     |; s| at | $dir/|"
  fi
  summary+=("$(printf '%-20s %6s%%  killed %3d  timed out %2d  lived %3d  not covered %3d  %4ss' "$dir" "$score" "$killed" "$timedout" "$lived" "$notcov" "$secs")")
done

echo
echo "== mutation score killed / (killed + lived), in $(( $(date +%s) - start_all ))s"
printf '%s\n' "${summary[@]}"
