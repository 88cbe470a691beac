# shellcheck shell=bash
# How the project's build dirs are configured (sourced by ci/bootstrap and ci/test).

# configure_build DIR [CMAKE_OPTION...]: configure DIR (Ninja on first use) with the options CI
# builds with: RelWithDebInfo, compiler warnings as errors, and the install prefix of the Debian
# packages (the binary has its rbd module's installed directory compiled in; a tree configured
# before /usr became the default keeps /usr/local otherwise).
configure_build() {
  local dir=$1
  shift
  local gen=()
  [[ -f $dir/CMakeCache.txt ]] || gen=(-G Ninja)
  cmake -S . -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUBLK_RDMA_WERROR=ON \
        -DCMAKE_INSTALL_PREFIX=/usr "$@" >/dev/null
}

# configure_fuzz_build: build-fuzz/, the libFuzzer targets of fuzz/ and the libraries they link
# (clang: libFuzzer is clang's), instrumented for coverage, ASan and UBSan; see ci/fuzz.
configure_fuzz_build() {
  configure_build build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DUBLK_RDMA_FUZZ=ON
}
