#!/bin/sh
# Prints the Debian version of the package built from this checkout, from
# `git describe`:
#   at tag v1.2.0                  -> 1.2.0
#   3 commits past v1.2.0, abc1234 -> 1.2.0+git3.gabc1234
#   no tag yet, 281 commits        -> 0.0.0~git281.gabc1234
#   uncommitted changes            -> the above + .dirty
# Each later commit on a branch sorts higher (dpkg --compare-versions): the
# commit count grows, "+" sorts after the tag alone and "~" before 0.0.0.
set -eu
cd "$(dirname "$0")"
d=$(git describe --tags --long --match 'v[0-9]*' --dirty 2>/dev/null || true)
if [ -n "$d" ]; then
  # v1.2.0-3-gabc1234[-dirty]
  dirty=; case $d in *-dirty) dirty=.dirty; d=${d%-dirty} ;; esac
  hash=${d##*-}; rest=${d%-*}; n=${rest##*-}; tag=${rest%-*}
  v=${tag#v}
  # A pre-release tag (v1.3.0-rc1) sorts before its release: - becomes ~.
  v=$(printf '%s' "$v" | tr -- - '~')
  if [ "$n" != 0 ]; then v="$v+git$n.$hash"; fi
  echo "$v$dirty"
  exit 0
fi
n=$(git rev-list --count HEAD)
hash=g$(git rev-parse --short HEAD)
dirty=; [ -n "$(git status --porcelain --untracked-files=no)" ] && dirty=.dirty
echo "0.0.0~git$n.$hash$dirty"
