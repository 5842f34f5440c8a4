"""The test suite is a package, so tests import their helpers as `tests.<module>`, never by bare name."""
