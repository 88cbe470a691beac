# Installing ublk-rdma as a system tool, and its Debian packages (cpack -G DEB; ci/package).
# Included from the top-level CMakeLists.txt after the ublk-rdma target exists.
#
# Two packages, from two install components: ublk-rdma (component main: everything but the rbd
# module) and ublk-rdma-rbd (component rbd: the module, LIBDIR/ublk-rdma/ublk-rdma-rbd.so, and
# with it the dependency on librbd1 and librados2, which a client or a server without rbd
# exports then does without).
#
# Paths relative to the install prefix (/usr in the package): the binary (sbin), modules-load.d,
# the man pages, the bash completion and /usr/share/doc/ublk-rdma. Absolute ones, because a
# system reads them there whatever the prefix: the systemd units and /etc/ublk-rdma. Each
# directory is spelled as the Debian 12 package that owns it spells it (systemd's
# /usr/lib/modules-load.d, the /lib/systemd/system of most): dpkg does not know that /lib is
# /usr/lib, and purging a package that named the other spelling would remove the owner's
# directory (the install test caught that). Other systems set these cache variables.
set(UBLK_RDMA_SYSTEMD_UNIT_DIR /lib/systemd/system CACHE PATH "Where the systemd units are installed")
set(UBLK_RDMA_MODULES_LOAD_DIR lib/modules-load.d CACHE STRING
    "Where the modules-load.d file is installed (relative: to the prefix)")
set(UBLK_RDMA_CONFIG_DIR /etc/ublk-rdma CACHE PATH "The configuration directory the units read")
option(UBLK_RDMA_COMPLETION "Generate and install the bash completion (ublk-rdma completion bash)" ON)

# The installed binary and module resolve every symbol at load and keep their relocations
# read-only (Debian's bindnow/relro hardening); a link option only, so no object is rebuilt for it.
target_link_options(ublk-rdma PRIVATE LINKER:-z,relro LINKER:-z,now)
target_link_options(ublk-rdma-rbd PRIVATE LINKER:-z,relro LINKER:-z,now)

# The module, where the binary looks for it (UBLK_RDMA_MODULE_INSTALL_DIR, server/CMakeLists.txt).
install(TARGETS ublk-rdma-rbd LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/ublk-rdma COMPONENT rbd
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
# cpack installs into /usr (CPACK_PACKAGING_INSTALL_PREFIX below): with another prefix, the
# binary would look for its module elsewhere than the package puts it.
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(WARNING "CMAKE_INSTALL_PREFIX is ${CMAKE_INSTALL_PREFIX}: the Debian packages made from this build "
                  "install into /usr, where this binary will not find its rbd module (configure with "
                  "-DCMAKE_INSTALL_PREFIX=/usr for them; ci/package does)")
endif()

set(UBLK_RDMA_DOC_DIR ${CMAKE_INSTALL_DATADIR}/doc/ublk-rdma)
set(_pkg ${CMAKE_CURRENT_LIST_DIR})
set(_pkg_out ${CMAKE_BINARY_DIR}/packaging)

# ublk_rdma_install_built(FILE DIR [GZIP] [OPTIONAL] [COMPONENT NAME]): install FILE, which the
# build makes, into DIR (relative to the prefix); GZIP: as NAME.gz (gzip -9n, as Debian wants man
# pages and changelogs); OPTIONAL: skip it, without even creating DIR, when the build did not make
# it; COMPONENT: the package's install component (default: main).
function(ublk_rdma_install_built file dir)
  cmake_parse_arguments(arg "GZIP;OPTIONAL" "COMPONENT" "" ${ARGN})
  if(NOT arg_COMPONENT)
    set(arg_COMPONENT main)
  endif()
  get_filename_component(name ${file} NAME)
  set(missing "message(FATAL_ERROR \"${file} was not built\")")
  if(arg_OPTIONAL)
    set(missing "")
  endif()
  set(copy "file(INSTALL \"\${_src}\" DESTINATION \"\${_dir}\" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)")
  if(arg_GZIP)
    set(copy "
      set(_dir \"\$ENV{DESTDIR}\${_dir}\")
      file(MAKE_DIRECTORY \"\${_dir}\")
      message(STATUS \"Installing (gzip): \${_dir}/${name}.gz\")
      execute_process(COMMAND gzip -9nc \"\${_src}\" OUTPUT_FILE \"\${_dir}/${name}.gz\"
                      COMMAND_ERROR_IS_FATAL ANY)
      file(CHMOD \"\${_dir}/${name}.gz\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)")
  endif()
  install(CODE "
    set(_src \"${file}\")
    set(_dir \"\${CMAKE_INSTALL_PREFIX}/${dir}\")  # file(INSTALL) adds DESTDIR itself
    if(EXISTS \"\${_src}\")
      ${copy}
    else()
      ${missing}
    endif()" COMPONENT ${arg_COMPONENT})
endfunction()

install(DIRECTORY ${_pkg}/systemd/ DESTINATION ${UBLK_RDMA_SYSTEMD_UNIT_DIR}
        FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${_pkg}/modules-load.d/ublk-rdma.conf DESTINATION ${UBLK_RDMA_MODULES_LOAD_DIR})
# The directory only: no configuration attaches or serves anything until an admin writes one.
install(DIRECTORY DESTINATION ${UBLK_RDMA_CONFIG_DIR})
install(FILES ${_pkg}/examples/serve-example.conf ${_pkg}/examples/devices.conf
        DESTINATION ${UBLK_RDMA_DOC_DIR}/examples)
install(FILES ${_pkg}/debian/copyright DESTINATION ${UBLK_RDMA_DOC_DIR})
# Each package has its own copyright file and changelog, as Debian wants.
set(UBLK_RDMA_RBD_DOC_DIR ${CMAKE_INSTALL_DATADIR}/doc/ublk-rdma-rbd)
install(FILES ${_pkg}/debian/copyright DESTINATION ${UBLK_RDMA_RBD_DOC_DIR} COMPONENT rbd)
set(UBLK_RDMA_PACKAGE_MAINTAINER "ublk-rdma maintainers <ublk-rdma@example.org>" CACHE STRING
    "The Maintainer field of the Debian package")
# The date of the last configure (or SOURCE_DATE_EPOCH, which CMake honours).
string(TIMESTAMP UBLK_RDMA_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file(${_pkg}/debian/changelog.in ${_pkg_out}/changelog @ONLY)
ublk_rdma_install_built(${_pkg_out}/changelog ${UBLK_RDMA_DOC_DIR} GZIP)
ublk_rdma_install_built(${_pkg_out}/changelog ${UBLK_RDMA_RBD_DOC_DIR} GZIP COMPONENT rbd)

# Man pages: the `man` target (scdoc sources in docs/man/, where scdoc is found) writes them to
# build/man/; installed gzipped when they were built.
ublk_rdma_install_built(${CMAKE_BINARY_DIR}/man/ublk-rdma.8 ${CMAKE_INSTALL_MANDIR}/man8 GZIP OPTIONAL)
ublk_rdma_install_built(${CMAKE_BINARY_DIR}/man/ublk-rdma.conf.5 ${CMAKE_INSTALL_MANDIR}/man5 GZIP OPTIONAL)

# Bash completion, printed by the built binary from its own command line definition.
if(UBLK_RDMA_COMPLETION)
  set(_completion ${CMAKE_BINARY_DIR}/completion/ublk-rdma)
  add_custom_command(
    OUTPUT ${_completion}.stamp
    COMMAND ${CMAKE_COMMAND} -DBIN=$<TARGET_FILE:ublk-rdma> -DOUT=${_completion}
            -P ${_pkg}/completion.cmake
    COMMAND ${CMAKE_COMMAND} -E touch ${_completion}.stamp
    DEPENDS ublk-rdma ${_pkg}/completion.cmake
    COMMENT "Generating the bash completion (ublk-rdma completion bash)")
  add_custom_target(bash-completion ALL DEPENDS ${_completion}.stamp)
  ublk_rdma_install_built(${_completion} ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
endif()

# The Debian packages: cpack -G DEB (or ci/package) -> ublk-rdma_VERSION_ARCH.deb and
# ublk-rdma-rbd_VERSION_ARCH.deb.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ublk-rdma)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/package)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL main rbd)
set(CPACK_DEBIAN_MAIN_PACKAGE_NAME ublk-rdma)
set(CPACK_DEBIAN_RBD_PACKAGE_NAME ublk-rdma-rbd)
# Each description's first line is its package's summary (CPACK_PACKAGE_DESCRIPTION_SUMMARY is
# left unset: CPack would put it above both); CPack indents the rest.
set(CPACK_DEBIAN_MAIN_DESCRIPTION "remote block devices over RDMA with the Linux ublk driver
ublk-rdma turns a storage server's RAM, files, block devices or Ceph RBD
images into local block devices (/dev/ublkbN) on its clients. The Linux ublk
driver hands block requests to a userspace daemon over io_uring; the daemon
forwards them over RDMA (RoCE, InfiniBand, iWARP or soft-RoCE) to the
ublk-rdma server on the storage host.

This package contains the ublk-rdma command (client daemons and server),
systemd units for servers and devices, and example configurations. Ceph RBD
exports need the package ublk-rdma-rbd as well.")
set(CPACK_DEBIAN_RBD_DESCRIPTION "Ceph RBD exports for the ublk-rdma server
ublk-rdma turns a storage server's RAM, files, block devices or Ceph RBD
images into local block devices (/dev/ublkbN) on its clients over RDMA.

This package contains the module through which the ublk-rdma server exports
Ceph RBD images (with librbd). Only a server with rbd exports needs it.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${UBLK_RDMA_PACKAGE_MAINTAINER}")
# Depends: what dpkg-shlibdeps finds each package's ELF files need, and for ublk-rdma-rbd the
# ublk-rdma of the same version (a module fits only the binary of its build).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
set(CPACK_COMPONENT_RBD_DEPENDS main)
# rdma-core loads the RDMA modules and sets up device nodes; ibverbs-providers holds the
# userspace drivers (rxe, mlx5, ...) without which libibverbs finds no device (libibverbs1 only
# recommends it); fio for trying a device out. ublk-rdma-rbd gets them through ublk-rdma.
set(CPACK_DEBIAN_MAIN_PACKAGE_RECOMMENDS "rdma-core, ibverbs-providers")
set(CPACK_DEBIAN_MAIN_PACKAGE_SUGGESTS "fio, ublk-rdma-rbd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Maintainer scripts (ublk-rdma only; packaging/debian/): daemon-reload, the units stopped on
# removal and their enable links removed on purge. Nothing is restarted on upgrade.
set(CPACK_DEBIAN_MAIN_PACKAGE_CONTROL_EXTRA
    "${_pkg}/debian/postinst;${_pkg}/debian/prerm;${_pkg}/debian/postrm")
include(CPack)
