# Build image for `cross build --target armv7-unknown-linux-gnueabihf` (see Cross.toml).
#
# The `:main` images are Ubuntu 24.04 (glibc and libclang new enough); the
# v0.2.5 release images are Ubuntu 16.04, whose libclang 3.8 is too old for
# rs_ws281x's bindgen. Pin a digest here for reproducible builds.
FROM ghcr.io/cross-rs/armv7-unknown-linux-gnueabihf:main

# rs_ws281x: cc builds its C library, bindgen (libclang) reads its headers,
# and its build script runs `git submodule update` (needs git on PATH).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        clang libclang-dev git \
 && rm -rf /var/lib/apt/lists/*
