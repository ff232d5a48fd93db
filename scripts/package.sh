#!/usr/bin/env bash
# Builds the Debian packages: lrts (binary, liblrts, systemd units, /etc/lrts/lrts.conf),
# liblrts-dev (headers, CMake package) and python3-lrts (the Python package).
#   scripts/package.sh [build-dir]     default build dir: build-deb (Release, for /usr)
# Configures the build dir for /usr if it is not (the packages' paths come from the configure
# step), builds it, runs cpack -G DEB and prints the paths of the .deb files, which are in
# BUILD_DIR/packages. Installs dpkg-dev and file (cpack's dpkg-shlibdeps) when they are missing.
# Then, on a Debian 12 machine: apt install ./lrts_*.deb ./liblrts-dev_*.deb ./python3-lrts_*.deb
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build-deb}"
mkdir -p "$build"
build="$(cd "$build" && pwd)"

missing=()
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v file >/dev/null || missing+=(file)
if ((${#missing[@]})); then
  echo "lrts package: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" ||
    { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; }
fi

cached() {  # cached VAR: its value in the build dir's CMakeCache.txt, empty if none
  sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" 2>/dev/null | head -1
}
# LRTS_CMAKE_FLAGS: more options for cmake, as for scripts/setup.sh.
read -r -a extra <<<"${LRTS_CMAKE_FLAGS:-}"
generator=()
if [ ! -f "$build/CMakeCache.txt" ]; then
  if command -v ninja >/dev/null; then generator=(-G Ninja); fi
  echo "lrts package: configuring $build for /usr"
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX=/usr -DLRTS_BUILD_TESTS=OFF -DLRTS_BUILD_BENCH=OFF \
    -DLRTS_BUILD_EXAMPLES=OFF "${extra[@]}" \
    >/dev/null
elif [ "$(cached CMAKE_INSTALL_PREFIX)" != /usr ]; then
  # The Python install dir is cached from the first prefix: computed again for /usr.
  echo "lrts package: configuring $build for /usr (was $(cached CMAKE_INSTALL_PREFIX))"
  cmake -S "$root" -B "$build" -DCMAKE_INSTALL_PREFIX=/usr -ULRTS_PYTHON_INSTALL_DIR \
    "${extra[@]}" >/dev/null
elif ((${#extra[@]})); then
  cmake -S "$root" -B "$build" "${extra[@]}" >/dev/null
fi
case "$(cached CMAKE_BUILD_TYPE)" in
  Release|RelWithDebInfo|MinSizeRel) ;;
  *) echo "lrts package: warning: $build is a $(cached CMAKE_BUILD_TYPE) build" >&2 ;;
esac

cmake --build "$build" -j "$(nproc)"
rm -f "$build"/packages/*.deb
(cd "$build" && cpack -G DEB >"$build/cpack.log" 2>&1) || { cat "$build/cpack.log"; exit 1; }
ls "$build"/packages/*.deb
