"""The top-level API: lattq.quantize / lattq.LattqConfig resolve to the PTQ pipeline in every import order."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "code",
    [
        "import lattq; import lattq.ptq; assert lattq.quantize is lattq.ptq.quantize and callable(lattq.quantize)",
        "import lattq.ptq, lattq; assert lattq.quantize is lattq.ptq.quantize",
        "import lattq; assert lattq.LattqConfig is __import__('lattq.ptq').ptq.LattqConfig",
        "import sys, lattq; assert 'transformers' not in sys.modules and 'lattq.ptq' not in sys.modules",
    ],
)
def test_toplevel_exports(code):
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_is_attribute_error():
    import lattq

    with pytest.raises(AttributeError, match="no attribute"):
        lattq.definitely_not_there  # noqa: B018
