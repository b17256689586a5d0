# Cross-compiling for arm64 (aarch64) Linux with Debian's toolchain (crossbuild-essential-arm64)
# and Debian's multiarch :arm64 libraries; binaries run here under qemu-user, which CMake and
# CTest use as the emulator. scripts/setup.sh installs all of it; the arm64 preset uses this file.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# The arm64 loader and libc come from libc6:arm64 (/lib/ld-linux-aarch64.so.1); the rest from
# /usr/lib/aarch64-linux-gnu, which that loader searches.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)

# Programs (protoc, grpc_cpp_plugin) are the build machine's; libraries, headers and CMake
# packages are the target's (multiarch paths under /usr), header-only packages are shared.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# pkg-config reads the target's .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
