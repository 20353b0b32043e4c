"""Build hook: compiles the Cython wire layer (dbmesh/_wire) when the package is installed."""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("dbmesh._wire.mysql_framing", ["dbmesh/_wire/mysql_framing.pyx"]),
    Extension("dbmesh._wire.pg_framing", ["dbmesh/_wire/pg_framing.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
