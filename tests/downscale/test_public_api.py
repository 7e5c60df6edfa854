"""The small public API of ``downscale``: every name resolves, and importing it never loads Lightning."""

import subprocess
import sys

import pytest

import downscale


@pytest.mark.parametrize("name", [n for n in downscale.__all__ if n != "__version__"])
def test_public_name_resolves_to_its_owner(name):
    obj = getattr(downscale, name)
    assert callable(obj)
    assert obj.__module__.startswith("downscale.")


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        downscale.nope  # noqa: B018


def test_public_api_never_loads_lightning():
    probe = ("import sys, downscale\n"
             "for n in downscale.__all__: getattr(downscale, n)\n"
             "print(sorted(m for m in sys.modules if m == 'lightning' or m.startswith('lightning.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
