"""The software version, recorded in bundles and outputs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fv3-downscale")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
