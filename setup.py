"""The compiled parts of onnet (Cython), built by `pip install`.

The index's hot loops and a lookup's fingerprints (core/_native.pyx), and the re-sync
token's common case (core/_resync_native.pyx).

Everything else is in pyproject.toml; setuptools needs this file only to compile the
extensions. Their C is generated from the .pyx at build time and never committed.
"""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

CORE = "service/onnet_server/core"

setup(
    ext_modules=cythonize(
        [
            Extension(
                "onnet_server.core._native",
                ["service/onnet_server/core/_native.pyx"],
                include_dirs=[numpy.get_include(), CORE],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                # A lookup job makes its batch's fingerprints on a thread without the GIL,
                # with the machine's libcrypto (OpenSSL 3), the library cryptography wraps.
                libraries=["crypto"],
                extra_compile_args=["-O3"],
            ),
            Extension(
                "onnet_server.core._resync_native",
                ["service/onnet_server/core/_resync_native.pyx"],
                include_dirs=[CORE],  # resync_token.h
                libraries=["crypto"],  # its MAC: keyed BLAKE2b
                extra_compile_args=["-O3"],
            ),
        ],
        compiler_directives={"language_level": 3},
        include_path=["service"],  # _native.pyx cimports _resync_native.pxd
    )
)
