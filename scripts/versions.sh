#!/usr/bin/env bash
# Installs the HAProxy and serf versions haserf is tested against, all from Debian's archive,
# side by side and without touching the system's packages, and prints where each binary is:
#
#   scripts/versions.sh                  # every version: "NAME VERSION PATH" per line
#   scripts/versions.sh haproxy-3.2      # one of them
#   scripts/versions.sh --path serf-0.10 # only its path (for HASERF_SERF=$(…))
#   scripts/versions.sh --list           # the names
#
#   haproxy-2.6  2.6.x   bookworm (the system package, `apt-get install haproxy`)
#   haproxy-3.0  3.0.x   trixie (+ trixie-security)
#   haproxy-3.2  3.2.x   forky, else sid
#   serf-0.9     0.9.4   bookworm (the system package)
#   serf-0.10    0.10.1  trixie
#
# The newer packages are fetched with a private apt configuration (its own sources list, lists
# and cache; the system's apt state is not used, its apt.conf.d settings such as a proxy are) by `apt-get download`, together with the
# libraries they need from the same suite, and unpacked with `dpkg -x` into one directory per
# version. HAProxy 3.x needs trixie's glibc (≥ 2.38), so its binary is pointed at the unpacked
# loader and libraries with `patchelf --set-interpreter … --force-rpath --set-rpath …`: the
# binary then runs (and re-executes itself on a master-worker reload) like any other program.
# (`LD_LIBRARY_PATH` alone or calling the new ld.so by hand do not work; see docs/testing.md.)
#
# Idempotent and cached: a finished version is reused without any network access. The cache
# is $HASERF_VERSIONS_DIR, else /var/cache/haserf/versions as root, else
# $XDG_CACHE_HOME/haserf/versions. `--refresh` fetches the suites' newest package again.
# Needs root (or sudo) only to install missing tools (patchelf) from Debian's packages.
# Each version is checked before its path is printed: `haproxy -vv` or `serf version` must
# run and report the expected version, and every HAProxy must survive a master-worker reload.
set -euo pipefail
shopt -s inherit_errexit

MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
KEYRING="${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"

# name | package | version prefix | suites to try, in order | binary inside the package
VERSIONS=(
  "haproxy-2.6|haproxy|2.6.|bookworm|/usr/sbin/haproxy"
  "haproxy-3.0|haproxy|3.0.|trixie|/usr/sbin/haproxy"
  "haproxy-3.2|haproxy|3.2.|forky sid|/usr/sbin/haproxy"
  "serf-0.9|serf|0.9.4|bookworm|/usr/bin/serf"
  "serf-0.10|serf|0.10.1|trixie|/usr/bin/serf"
)

die() {
  echo "versions: $*" >&2
  exit 1
}
say() { echo "versions: $*" >&2; }

if [ -n "${HASERF_VERSIONS_DIR:-}" ]; then
  CACHE="$HASERF_VERSIONS_DIR"
elif [ "$(id -u)" -eq 0 ]; then
  CACHE=/var/cache/haserf/versions
else
  CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/haserf/versions"
fi

mode=all
refresh=0
names=()
while (($#)); do
  case "$1" in
    --path) mode=path ;;
    --list) mode=list ;;
    --refresh) refresh=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) names+=("$1") ;;
  esac
  shift
done

entry() { # NAME → the VERSIONS line
  local e
  for e in "${VERSIONS[@]}"; do
    [ "${e%%|*}" = "$1" ] && { echo "$e"; return 0; }
  done
  return 1
}

if [ "$mode" = list ]; then
  for e in "${VERSIONS[@]}"; do echo "${e%%|*}"; done
  exit 0
fi
if ((${#names[@]} == 0)); then
  for e in "${VERSIONS[@]}"; do names+=("${e%%|*}"); done
fi
for n in "${names[@]}"; do
  entry "$n" >/dev/null || die "unknown version '$n'; one of: $("$0" --list | tr '\n' ' ')"
done

# The version a binary reports (first line of `haproxy -v` / `serf version`), or nothing.
reported_version() { # PACKAGE BINARY
  case "$1" in
    haproxy) { timeout 10 "$2" -v 2>/dev/null || true; } | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p' ;;
    serf) { timeout 10 "$2" version 2>/dev/null || true; } | sed -n '1s/^\(Serf v\)\{0,1\}\([0-9][^ ]*\).*/\2/p' ;;
  esac
}

# A master-worker reload must work: the master re-executes the binary (through the loader
# named in its ELF header) and forks a new worker; the master must still be there after it.
check_reload() { # HAPROXY
  local bin="$1" dir master worker new=""
  dir=$(mktemp -d /tmp/haserf-versions-reload.XXXXXX)
  cat >"$dir/h.cfg" <<EOF
global
    stats socket $dir/admin.sock mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
backend b
    server s1 127.0.0.1:9 disabled
EOF
  timeout -k 2 30 "$bin" -W -db -f "$dir/h.cfg" >"$dir/log" 2>&1 &
  local wrapper=$!
  local ok=0 i
  # Started: the master has forked its worker and logged "Loading success".
  for i in $(seq 100); do
    master=$(pgrep -P "$wrapper" | head -1 || true)
    worker=$([ -n "$master" ] && pgrep -P "$master" | head -1 || true)
    [ -n "$worker" ] && grep -q 'Loading success' "$dir/log" && break
    worker=""
    sleep 0.1
  done
  if [ -n "${worker:-}" ]; then
    # Reloaded: a new worker and the master still there. USR2 is sent again every 2 s, as a
    # master busy starting up has been seen to miss the first one.
    for i in $(seq 150); do
      ((i % 20 == 1)) && kill -USR2 "$master"
      sleep 0.1
      kill -0 "$master" 2>/dev/null || break
      new=$(pgrep -P "$master" | grep -vx "$worker" | head -1 || true)
      [ -n "$new" ] && { ok=1; break; }
    done
  fi
  # shellcheck disable=SC2086 # pid lists
  kill -KILL $master $worker $new "$wrapper" 2>/dev/null || true
  wait "$wrapper" 2>/dev/null || true
  if ((ok == 0)); then
    say "$bin: the master-worker reload failed (master ${master:-none}, worker ${worker:-none}); its output:"
    cat "$dir/log" >&2
    rm -rf "$dir"
    return 1
  fi
  rm -rf "$dir"
}

# Checks a binary: it runs, reports a version starting with PREFIX (when PREFIX is not
# empty) and, for HAProxy, survives a master-worker reload.
verify() { # PACKAGE PREFIX BINARY
  local v
  v=$(reported_version "$1" "$3")
  [ -n "$v" ] || return 1
  [[ "$v" == "$2"* ]] || return 1
  if [ "$1" = haproxy ]; then
    timeout 10 "$3" -vv >/dev/null 2>&1 || return 1
    check_reload "$3" || return 1
  fi
}

need_tools() {
  local need=()
  command -v patchelf >/dev/null || need+=(patchelf)
  command -v apt-get >/dev/null || die "apt-get is missing: this script needs Debian"
  command -v dpkg-deb >/dev/null || die "dpkg-deb is missing: this script needs Debian"
  if ((${#need[@]})); then
    local SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing ${need[*]} from Debian's packages"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# apt-get / apt-cache with the private configuration CONF, read after the system's (`-c`),
# so that it wins where it speaks and the system's proxy or Check-Valid-Until still apply.
papt() { # CONF PROGRAM ARGS…
  local conf="$1" prog="$2"
  shift 2
  "$prog" -c "$conf" "$@"
}

# A private apt configuration for SUITE under $CACHE/apt/SUITE; echoes its apt.conf path.
apt_for() { # SUITE
  local suite="$1" d="$CACHE/apt/$1"
  mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/empty"
  : >"$d/status"
  {
    echo "deb [signed-by=$KEYRING] $MIRROR $suite main"
    case "$suite" in
      bookworm | trixie) echo "deb [signed-by=$KEYRING] $SECURITY_MIRROR $suite-security main" ;;
    esac
  } >"$d/sources.list"
  cat >"$d/apt.conf" <<EOF
Dir::Etc::SourceList "$d/sources.list";
Dir::Etc::SourceParts "$d/empty";
Dir::Etc::Preferences "$d/empty/none";
Dir::Etc::PreferencesParts "$d/empty";
Dir::State::Lists "$d/lists";
Dir::State::status "$d/status";
Dir::Cache "$d";
Dir::Cache::Archives "$d/archives";
Dir::Cache::pkgcache "pkgcache.bin";
Dir::Cache::srcpkgcache "srcpkgcache.bin";
APT::Architecture "$(dpkg --print-architecture)";
APT::Architectures { "$(dpkg --print-architecture)"; };
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled "false";
Acquire::IndexTargets::deb::CNF::DefaultEnabled "false";
APT::Sandbox::User "root";
EOF
  if [ "$refresh" = 1 ] || ! compgen -G "$d/lists/*_Packages*" >/dev/null; then
    say "apt-get update for $suite (a private apt configuration in $d)"
    papt "$d/apt.conf" apt-get update -qq >&2 || die "apt-get update for $suite failed"
  fi
  echo "$d/apt.conf"
}

# The candidate version of PACKAGE with the private configuration CONF.
candidate() { # CONF PACKAGE
  papt "$1" apt-cache policy "$2" 2>/dev/null | sed -n 's/^ *Candidate: //p' |
    grep -v '(none)' || true
}

# PACKAGE and the libraries it needs, recursively (Depends and Pre-Depends on lib*/zlib*
# packages only: adduser, lsb-base and the like are not needed to run the binary). One
# apt-cache call per level of the dependency tree (each call loads the package cache).
closure() { # CONF PACKAGE
  local conf="$1" seen=" $2 " level=("$2") next d
  echo "$2"
  while ((${#level[@]})); do
    next=()
    for d in $(papt "$conf" apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "${level[@]}" 2>/dev/null |
      sed -n 's/^ *|\{0,1\}\(Pre\)\{0,1\}Depends: \([^<][^ ]*\)$/\2/p' |
      grep -E '^(lib|zlib)' | sort -u || true); do
      d="${d%:*}"
      [[ "$seen" == *" $d "* ]] && continue
      seen+="$d "
      echo "$d"
      next+=("$d")
    done
    level=("${next[@]}")
  done
}

# Downloads and unpacks NAME into $CACHE/NAME/root; echoes the binary's path.
unpack() { # NAME PACKAGE PREFIX SUITES BINARY
  local name="$1" pkg="$2" prefix="$3" suites="$4" binpath="$5"
  local dest="$CACHE/$name" conf="" version="" suite
  need_tools
  for suite in $suites; do
    conf=$(apt_for "$suite")
    version=$(candidate "$conf" "$pkg")
    [[ "$version" == "$prefix"* ]] && break
    say "$suite has $pkg ${version:-(none)}, not $prefix*"
    version=""
  done
  [ -n "$version" ] || die "no $pkg $prefix* in Debian's $suites"
  say "fetching $pkg $version from $suite (with its libraries) into $dest"
  rm -rf "$dest"
  mkdir -p "$dest/debs" "$dest/root"
  local pkgs=()
  mapfile -t pkgs < <(closure "$conf" "$pkg")
  pkgs[0]="$pkg=$version"
  (cd "$dest/debs" && papt "$conf" apt-get download -qq "${pkgs[@]}" >&2) ||
    die "apt-get download ${pkgs[*]} failed"
  local deb
  for deb in "$dest"/debs/*.deb; do dpkg -x "$deb" "$dest/root"; done
  rm -rf "$dest/debs"
  local bin="$dest/root$binpath"
  [ -x "$bin" ] || die "$pkg $version has no $binpath"
  # Dynamically linked (HAProxy; serf is a static Go binary): the unpacked loader, and the
  # unpacked libraries before the system's, for the binary and every library it loads.
  if patchelf --print-interpreter "$bin" >/dev/null 2>&1; then
    local loader
    loader=$(find "$dest/root/usr/lib" -type f -name 'ld-linux*.so.*' | head -1)
    [ -n "$loader" ] || die "$name: no loader (ld-linux*.so) unpacked from libc6"
    patchelf --set-interpreter "$loader" --force-rpath --set-rpath "$(dirname "$loader")" "$bin"
  fi
  echo "$version" >"$dest/version"
  echo "$version|$bin"
}

# The prefix `haproxy -v`/`serf version` must report. Debian builds serf without its version
# stamp (both 0.9.4 and 0.10.1 print "0.8.2-dev"), so there the package version decides.
reported_prefix() { # PACKAGE PREFIX
  if [ "$1" = serf ]; then echo ""; else echo "$2"; fi
}

# Echoes "PACKAGE-VERSION|PATH" of NAME's binary, installing it first if needed.
install_one() { # NAME
  local name pkg prefix suites binpath
  IFS='|' read -r name pkg prefix suites binpath <<<"$(entry "$1")"
  local dest="$CACHE/$name" expect found
  expect=$(reported_prefix "$pkg" "$prefix")
  # The system package, when it is this version (bookworm's haproxy and serf).
  local sys
  sys=$(dpkg-query -W -f '${Status} ${Version}' "$pkg" 2>/dev/null || true)
  if [[ "$sys" == "install ok installed $prefix"* ]] && command -v "$pkg" >/dev/null; then
    verify "$pkg" "$expect" "$(command -v "$pkg")" ||
      die "the system's $pkg ($(command -v "$pkg")) does not run, report $prefix* or reload"
    echo "${sys##* }|$(command -v "$pkg")"
    return
  fi
  if [ -f "$dest/ok" ] && [ "$refresh" = 0 ]; then
    found="$(cat "$dest/version")|$dest/root$binpath"
    verify "$pkg" "$expect" "${found#*|}" && { echo "$found"; return; }
    say "$name in $dest does not run any more; fetching it again"
  fi
  found=$(unpack "$name" "$pkg" "$prefix" "$suites" "$binpath")
  verify "$pkg" "$expect" "${found#*|}" ||
    die "$name (${found#*|}) does not run, report $prefix* or reload"
  touch "$dest/ok"
  echo "$found"
}

mkdir -p "$CACHE"
# One run at a time per cache (several engineers or CI jobs may share the machine).
exec 9>"$CACHE/.lock"
flock 9

for n in "${names[@]}"; do
  found=$(install_one "$n")
  if [ "$mode" = path ]; then
    echo "${found#*|}"
  else
    printf '%-12s %-18s %s\n' "$n" "${found%%|*}" "${found#*|}"
  fi
done
