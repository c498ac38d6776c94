#!/usr/bin/env bash
# Mutation testing of Gooni's core packages: plant one small bug at a time
# (a flipped comparison) in the files that hold the core behaviours, run the
# tests of that behaviour, and count the bugs they let through. Prints, per
# target and per package, the score and every surviving mutant.
#
#   scripts/mutation.sh              # every target below (under 15 minutes on 2 idle cores)
#   scripts/mutation.sh store        # the targets of one directory
#   LOG_DIR=/tmp/m scripts/mutation.sh   # keep gremlins' output per target
#
# Not a CI step (too slow); the command a reviewer runs after touching a core
# package. The score per package is recorded in docs/RELIABILITY.md.
#
# Tool: gremlins (github.com/go-gremlins/gremlins), pinned below and run with
# `go run module@version`, so nothing is installed. It copies the module to a
# temporary directory per worker, applies one mutant at a time there and runs
# `go test -failfast` on the mutated package only; a mutant is KILLED when a
# test fails, LIVED when every test passes, TIMED OUT when the run takes longer
# than the timeout coefficient times the package's plain test run. Leave the
# tree alone while it runs: the workers copy it when they start.
set -euo pipefail
cd "$(dirname "$0")/.."

GREMLINS="github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0"
# A mutant is stopped after COEFF x the package's clean test run under
# coverage, measured once per target (with -count=1, so never a cached
# result) with a warm build cache. A mutant's run also recompiles and relinks
# the package's test binary (2-6 s of the run), so the coefficient must leave
# room for that when the selected tests themselves take a second or two;
# 8 does (store 25 s, server 58 s against runs of 4-10 s on busy cores). A
# mutant that hangs spins until then on every core its goroutines reach,
# so a larger coefficient costs minutes.
COEFF="${COEFF:-8}"

# The run is bounded by the number of mutants: each one recompiles and
# relinks its package's test binary, 2.5 (catalog) to 6 (server)
# CPU-seconds before a test runs. With every gremlins kind on these files
# (~560 mutants) and each package's whole suite the run took about an hour
# of CPU; with the kinds below and each target's own tests, about 25
# CPU-minutes, under 15 minutes on 2 cores:
#   negation (== for !=, < for >=, > for <=: every decision flipped): on;
#   boundary (< for <=, > for >=): off; in a full run 25 of its 64 mutants
#     outside the generate validator survived and 22 of those were
#     equivalent (a bound that only saves a count, a sort tie that cannot
#     happen, a length no valid input has); the validator's 13 all died;
#   arithmetic: off; most of its mutants here turn a string concatenation's
#     + into -, which does not compile, and gremlins v0.6.0 counts a build
#     failure as KILLED (go test exits 1 either way);
#   ++/-- and negated signs: off (21 mutants; one loops until the timeout).
# The tests written for the survivors of the full run stay in the suite.
KINDS=(--conditionals-negation --conditionals-boundary=false --arithmetic-base=false
  --increment-decrement=false --invert-negatives=false)

# package directory | the files whose mutants count (every other file of the
# directory is excluded) | gremlins workers | the tests run against each
# mutant (a go test -run pattern; empty = all of the package's tests).
#
# Each target runs the tests of the behaviour its files hold, not the whole
# package's (server's full suite is about 15 CPU-seconds a mutant). A mutant
# that only a test outside the pattern would catch counts as LIVED, never as
# KILLED; a line no selected test reaches counts as NOT COVERED. One worker
# more than the 2 cores keeps them busy while a build or a test waits; the
# dispatcher's tests mostly wait on real time (retries, Retry-After), so it
# gets 5. WORKERS=n overrides every target.
targets=(
  # task lifecycle, group commit, queue limit, input quota
  "store|tasks.go|3|^(TestCreateAndGetTask|TestQueueFull|TestQueueBound.*|TestGroupCommit.*|TestWaiting.*|TestSearch.*|TestTask.*|TestQueueLimit.*|TestReleasedTask.*|TestDeletedTask.*|TestProgressNeverGoesDown|TestRequeueOrFail|TestListenersHearCommittedTasksOnly|TestInputQuota|TestIdempotency.*|TestCancelTask|TestRecentRunTimesAndPendingAhead|TestGalleryPaging|TestCreateTaskDurableAcrossOpen|TestFinishedTask.*)$"
  # the audit chain: append, verify, prune, rotate, list
  "store|audit.go|3|^(TestAudit.*|TestVerifyAudit.*|TestRotateAuditKey.*|TestPrune.*|TestReanchor|TestListAudit.*|TestRemoveAccountAudited)$"
  "store|sessions.go|3|^(TestSessions|TestInvite.*|TestAuditedWritesFailClosed)$"
  # the accounts kept in memory, how the group committer gathers a batch, the prompt index behind the submit
  "store|accountcache.go groupcommit.go searchindex.go|3|^(TestAccountRows.*|TestAccountReads.*|TestListAccountsGivesCopies|TestAccountsCRUD|TestSetAccountStatusUnless|TestSiblings.*|TestGather.*|TestGroupCommit.*|TestSearch.*|TestWaiting.*|TestDeleting.*|TestFailedIndexing.*|TestConcurrentSearches.*)$"
  # user and admin auth, the throttles, CORS, client addresses
  "server|auth.go throttle.go middleware.go|3|^(TestUserAuthPrecedence|TestSession.*|TestFailClosedWhenSessionStoreUnreadable|TestAdminAuth|TestAdminLoginFailureReason|TestAdminActionsFailClosedWhenAuditFails|TestTLSCookiesAndHSTS|TestForwardedProtoNearestProxyDecides|TestDecodeTokenLength|TestThrottle.*|TestMalformedQueryKeyNeverFallsThrough|TestErrorShapes|TestRecoveredPanicIsInternalError|TestCorrelationID|TestCORS|TestSameOriginComparesTheScheme|TestRollingWindowLimiter|TestAuthSessionThrottle|TestAdminThrottles|TestTrustedProxies|TestSecurityHeaders|TestInviteMode|FuzzUserCredentials|FuzzDecodeToken)$"
  # the dispatcher and the reaper (not deploys, media checks, health checks, drivers)
  "internal/dispatch|dispatch.go reap.go|5|^(TestTasksFinishWithMediaOnDisk|TestFaultsAndFailover|TestCapacityIsRespectedAndLoadSpread|TestResumeFinishesProcessingTasks|TestReaperFailsStaleTasks|TestDispatchNeverSendsToInvalidTarget|TestRemoveAccountFailsItsTasks|TestWorkspaceGoingAwayMidTaskFailsOverAndComesBack|TestImageToVideoSendsTheInputImage|TestDisableDuringHealthCheckWins|TestNewFillsDefaults|TestPick.*|TestDescribeTries|TestDispatchPass.*|TestZeroCapacity.*|TestSubmitAnswered.*|TestAccountDown.*|TestRoutingByModel|TestBusyIsNotAFailedTry|TestColdStartIsNotAFailure|TestQueuedTTLAndProcessingTTL)$"
  # the generate validator
  "internal/catalog|generate.go|3|^(TestValidate.*|TestParamsJSONIsCanonical|TestDecodeGenerate.*|TestParseCount|TestUnknownModelNameIsShortened|TestEnumParam|FuzzDecodeGenerate)$"
)

# Each mutant relinks and reruns a package's tests. The store's tests fsync
# (synchronous=FULL) and the dispatcher's and server's mostly wait on real
# time: temporary files on tmpfs and more parallel tests make each run a few
# times faster without changing what the tests check.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
# -count=1: the coverage run that sets the timeout is never a cached result
# (a cached one takes a second, and every mutant then times out). go vet
# already runs in CI; here it would only redo its checks per mutant.
# -ldflags=-w: no DWARF in the test binaries, which links them faster.
# GOGC=400 (unless set): the compiler and linker collect less often; a
# server mutant's build took 3.6 instead of 4.0 CPU-seconds (5 builds each)
# and the test binaries run a second or two, so their extra heap is small.
export GOGC="${GOGC:-400}"
# -gcflags=-l: no inlining in the mutated package (the only one rebuilt per
# mutant); its build took 11-26 % less CPU (store 3.35 -> 2.87 s, server
# 5.8 -> 4.3 s, dispatch 2.69 -> 2.40 s, 5-6 builds each) and what a test
# observes does not depend on inlining.
base_goflags="${GOFLAGS:+$GOFLAGS }-count=1 -parallel=8 -vet=off -ldflags=-w -gcflags=-l"

only="${1:-}"
out_dir="$(mktemp -d "${TMPDIR:-/tmp}/gooni-mutation.XXXXXX")"
trap 'rm -rf "$out_dir"' EXIT
# LOG_DIR=dir keeps gremlins' full output per target there.
log_dir="${LOG_DIR:-$out_dir}"
mkdir -p "$log_dir"

declare -A pkg_k pkg_l pkg_t pkg_n
pkgs=()
summary=()
cpu_all=0
start_all=$(date +%s)
for t in "${targets[@]}"; do
  IFS='|' read -r dir files workers run <<<"$t"
  workers="${WORKERS:-$workers}"
  keep=" $files "
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
  for f in $files; do
    if [ ! -f "$dir/$f" ]; then
      echo "mutation.sh: $dir/$f does not exist; update the targets" >&2
      exit 1
    fi
  done

  log="$log_dir/$(echo "$dir $files" | tr '/ ' '__').log"
  echo "== $dir ($files): gremlins with $workers workers, timeout coefficient $COEFF${run:+, tests $run}"
  t0=$(date +%s)
  TIMEFORMAT='%U %S'
  cpu=$( { time GOFLAGS="$base_goflags${run:+ -run=$run}" go run "$GREMLINS" unleash \
    --workers "$workers" --timeout-coefficient "$COEFF" "${KINDS[@]}" \
    "${excludes[@]}" "./$dir" >"$log" 2>&1 || true; } 2>&1 | awk '{ printf "%d", $1 + $2 }')
  secs=$(( $(date +%s) - t0 ))
  cpu_all=$((cpu_all + cpu))

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
  echo "   killed $killed, timed out $timedout, lived $lived, not covered $notcov, not viable $viable: score ${score}% in ${secs}s (${cpu} CPU-seconds)"
  if [ "$lived" -gt 0 ]; then
    echo "   surviving mutants:"
    grep '^ *LIVED' "$log" | sed "s|^ *LIVED *|     |; s| at | $dir/|"
  fi
  if [ "$timedout" -gt 0 ]; then
    echo "   timed out (not counted):"
    grep '^ *TIMED OUT' "$log" | sed "s|^ *TIMED OUT *|     |; s| at | $dir/|"
  fi
  if [ "$notcov" -gt 0 ]; then
    echo "   not covered by the selected tests:"
    grep '^ *NOT COVERED' "$log" | sed "s|^ *NOT COVERED *|     |; s| at | $dir/|"
  fi
  if [ -z "${pkg_k[$dir]:-}" ]; then
    pkgs+=("$dir")
    pkg_k[$dir]=0 pkg_l[$dir]=0 pkg_t[$dir]=0 pkg_n[$dir]=0
  fi
  pkg_k[$dir]=$((pkg_k[$dir] + killed)) pkg_l[$dir]=$((pkg_l[$dir] + lived))
  pkg_t[$dir]=$((pkg_t[$dir] + timedout)) pkg_n[$dir]=$((pkg_n[$dir] + notcov))
  summary+=("$(printf '  %-44s %6s%%  killed %3d  timed out %2d  lived %3d  not covered %3d  %4ss' "$dir ($files)" "$score" "$killed" "$timedout" "$lived" "$notcov" "$secs")")
done

echo
echo "== mutation score killed / (killed + lived), in $(( $(date +%s) - start_all ))s wall, ${cpu_all} CPU-seconds"
printf '%s\n' "${summary[@]}"
for dir in "${pkgs[@]}"; do
  k=${pkg_k[$dir]} l=${pkg_l[$dir]}
  score=$(awk -v k="$k" -v l="$l" 'BEGIN { if (k + l == 0) print "n/a"; else printf "%.1f", 100 * k / (k + l) }')
  printf '%-46s %6s%%  killed %3d  timed out %2d  lived %3d  not covered %3d\n' "$dir" "$score" "$k" "${pkg_t[$dir]}" "$l" "${pkg_n[$dir]}"
done
