#!/usr/bin/env bash
# Prints /usr/share/doc/rollbridge/copyright (machine-readable, DEP-5):
# rollbridge's own license, then the license of every Go module compiled
# into the binaries given as arguments (as `go version -m` lists them),
# read from the module cache, so the file cannot fall behind go.mod.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
indent() { sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /'; }
cat <<HEAD
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rollbridge-go
Upstream-Contact: https://github.com/rollbridge/rollbridge-go/issues
Source: https://github.com/rollbridge/rollbridge-go

Files: *
Copyright: $(sed -n 's/^Copyright (c) //p' "$repo/LICENSE")
License: Expat
HEAD
sed '1,/^Copyright/d' "$repo/LICENSE" | sed '/./,$!d' | indent
modcache=$(go env GOMODCACHE)
go version -m "$@" | awk '$1=="dep"{print $2, $3}' | sort -u | while read -r mod ver; do
  # The module cache escapes upper-case letters as !lower.
  dir="$modcache/$(printf '%s@%s' "$mod" "$ver" | sed 's/[A-Z]/!\L&/g')"
  lic=$(ls "$dir"/LICENSE* "$dir"/COPYING* "$dir"/LICENCE* 2>/dev/null | head -1 || true)
  [ -n "$lic" ] || { echo "copyright.sh: no license file for $mod $ver in $dir" >&2; exit 1; }
  names=()
  grep -q 'Permission is hereby granted' "$lic" && names+=(Expat)
  if grep -q 'Neither the name' "$lic"; then names+=(BSD-3-clause)
  elif grep -q 'Redistribution and use' "$lic"; then names+=(BSD-2-clause); fi
  grep -q 'Apache License' "$lic" && names+=(Apache-2.0)
  [ ${#names[@]} -gt 0 ] || names=("other-$(basename "$mod")")
  name=$(printf '%s and ' "${names[@]}"); name=${name% and }
  echo
  echo "Files: vendor/$mod/*"
  echo "Copyright: the authors of $mod"
  echo "Comment: Go module $mod $ver, compiled into the binaries"
  echo " (vendor/ is where \`go mod vendor\` puts it)."
  echo "License: $name"
  # Every text in full, except the Apache License 2.0's own, which
  # Debian ships (and lintian refuses in full).
  awk -v note="The full text of the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0." '
    /^[[:space:]]*Apache License[[:space:]]*$/ { print note; exit }
    { print }' "$lic" | indent
  if [ "$name" = Apache-2.0 ] && ! grep -q '^[[:space:]]*Apache License[[:space:]]*$' "$lic"; then
    echo " The full text of the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0."
  fi
done
