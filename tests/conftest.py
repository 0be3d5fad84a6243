"""Test-run settings shared by every module."""

from hypothesis import settings

# Tests write only inside their own temporary directories: no example database in the checkout.
settings.register_profile("lashstore", database=None)
settings.load_profile("lashstore")
