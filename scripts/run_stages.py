#!/usr/bin/env bash
# Runs every check of `make test` as a named stage, times each one and prints a
# summary. All stages run even when one fails, so one CI run shows everything;
# the exit status is non-zero if any failed.
#   STAGES="lint unit"  run only stages whose name starts with one of these words
#   MOLECULE_JOBS=N     molecule scenarios run N at a time (default 2), each in its
#                       own lab; a scenario's output is printed when it ends
#   MOLECULE_DISTROS    distributions for the scenarios listed in molecule/both-distros
set -uo pipefail
cd "$(dirname "$0")/.."

checks=(
  "yamllint|yamllint -s ."
  "ansible-lint|ansible-lint"
  "ruff|ruff check . && ruff format --check ."
  "argspecs|python3 scripts/check_argument_specs.py"
  "changelog|antsibull-changelog lint"
  "unit|python3 -m pytest tests/unit -q -p no:cacheprovider"
  "sanity|scripts/sanity"
  "build|scripts/build-check"
  "lab-images|python3 lab/lab.py image --distro bookworm && python3 lab/lab.py image --distro trixie"
)

# Every scenario runs on Debian 12; those named in molecule/both-distros also on 13.
scenarios=()
for dir in molecule/*/; do
  scenario=$(basename "$dir")
  [[ $scenario == _* ]] && continue
  for distro in ${MOLECULE_DISTROS:-bookworm trixie}; do
    if [[ $distro != bookworm ]] && ! grep -qx "$scenario" molecule/both-distros 2>/dev/null; then
      continue
    fi
    scenarios+=("molecule:$scenario@$distro|MSA_LAB_DISTRO=$distro molecule test -s $scenario")
  done
done

selected() {
  [[ -z ${STAGES:-} ]] && return 0
  local word
  for word in $STAGES; do [[ $1 == "$word"* ]] && return 0; done
  return 1
}

logs=$(mktemp -d /tmp/msa-stages.XXXXXX)
trap 'rm -rf "$logs"' EXIT
declare -a summary=()
passed=0 failed=0
total_start=$SECONDS

record() { # name result seconds
  summary+=("$(printf '%-44s %-7s %5ss' "$1" "$2" "$3")")
  if [[ $2 == ok ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

for entry in "${checks[@]}"; do
  name=${entry%%|*} cmd=${entry#*|}
  selected "$name" || continue
  printf '\n===== %s: %s\n' "$name" "$cmd"
  start=$SECONDS
  if bash -c "$cmd"; then result=ok; else result=FAILED; fi
  record "$name" "$result" $((SECONDS - start))
done

# Molecule scenarios: each in its own lab (m-<scenario>), so they can overlap.
# The same scenario on two distributions shares a lab name, so those never overlap.
run_scenario() { # index name cmd
  local start=$SECONDS result=ok
  bash -c "$3" > "$logs/$1.log" 2>&1 || result=FAILED
  echo "$result $((SECONDS - start))" > "$logs/$1.result"
}
declare -a names=() running=()
index=0
for entry in "${scenarios[@]}"; do
  name=${entry%%|*} cmd=${entry#*|}
  selected "$name" || continue
  scenario=${name#molecule:} scenario=${scenario%@*}
  # wait for a free slot, and for the other distribution of the same scenario
  while :; do
    busy=0 clash=0
    for i in "${running[@]}"; do
      [[ -e $logs/$i.result ]] && continue
      busy=$((busy + 1))
      other=${names[$i]#molecule:} other=${other%@*}
      [[ $other == "$scenario" ]] && clash=1
    done
    ((busy < ${MOLECULE_JOBS:-2} && !clash)) && break
    sleep 2
  done
  names[index]=$name
  printf '\n===== %s: started\n' "$name"
  run_scenario "$index" "$name" "$cmd" &
  running+=("$index")
  index=$((index + 1))
done
wait
for i in "${!names[@]}"; do
  read -r result seconds < "$logs/$i.result"
  printf '\n===== %s: %s in %ss, its output:\n' "${names[$i]}" "$result" "$seconds"
  if [[ $result == ok ]]; then tail -n 40 "$logs/$i.log"; else cat "$logs/$i.log"; fi
  record "${names[$i]}" "$result" "$seconds"
done

printf '\n===== stage times\n'
printf '%s\n' "${summary[@]}"
printf '%-44s %-7s %5ss\n' "total" "" $((SECONDS - total_start))
printf 'stages: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
