"""The standard-library modules a plugin may import: the one place the
list lives.

componentize-py puts no standard library on a file system at run time: a
module can be imported inside the runtime only if it was imported while the
runtime was built (its pre-initialisation snapshot). So the runtime imports
every module named here at build time; a plugin that imports anything else
(that is not one of its own modules) fails to load with the module's name
and this list. Adding a module: add it here, rebuild the runtime
(scripts/build-runtime.sh), and mention it in plugins/README.md (a test
checks that the README lists exactly these).

Nothing else is importable, built-in modules included: the list is the
whole of what a plugin gets from the standard library (submodules that a
listed module imports itself, such as `os.path`, come with it).
"""

STDLIB = (
    "abc",
    "array",
    "base64",
    "binascii",
    "bisect",
    "calendar",
    "cmath",
    "collections",
    "collections.abc",
    "colorsys",
    "contextlib",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "io",
    "itertools",
    "json",
    "math",
    "numbers",
    "operator",
    "os",
    "random",
    "re",
    "statistics",
    "string",
    "struct",
    "sys",
    "textwrap",
    "time",
    "traceback",
    "types",
    "typing",
    "urllib.parse",
    "warnings",
    "weakref",
    "zlib",
)
