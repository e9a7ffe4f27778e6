"""The version of vaelab, in one place: the package, the run configs it stamps and pyproject.toml read it."""
__version__ = "0.1.0"
