"""Hypothesis profiles for the property tests.

``ci`` (the default) is derandomised with a fixed number of examples so that every run checks the
same cases; ``dev`` draws more, fresh examples. Pick one with ``DYNA_HYPOTHESIS_PROFILE=dev`` or
pytest's ``--hypothesis-profile dev``.
"""

import os

from hypothesis import HealthCheck, settings

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    "dev",
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.load_profile(os.environ.get("DYNA_HYPOTHESIS_PROFILE", "ci"))
