"""Only for the optional C speedup; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("trio_ws._speedups", ["trio_ws/_speedups.c"], optional=True)])
