"""Names that moved keep working for one release, with a DeprecationWarning that says where to."""

from __future__ import annotations

import pytest

import dyna
import dyna.functional
from dyna.functional import cnu


@pytest.mark.parametrize("package", [dyna, dyna.functional], ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", ["psi", "resize1d", "resize2d"])
def test_cnu_projections_at_their_old_places_warn_and_are_the_same_function(package, name):
    assert name not in package.__all__
    with pytest.warns(
        DeprecationWarning,
        match=rf"{package.__name__}\.{name} is deprecated.*"
        r"dyna\.functional\.cnu",
    ):
        alias = getattr(package, name)
    assert alias is getattr(cnu, name)


def test_from_import_of_an_old_name_warns():
    with pytest.warns(DeprecationWarning, match=r"dyna\.psi is deprecated"):
        from dyna import psi
    assert psi is cnu.psi


@pytest.mark.parametrize("package", [dyna, dyna.functional], ids=lambda p: p.__name__)
def test_unknown_names_still_raise_attribute_error(package):
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        package.no_such_name
