"""The test suite: tests in folders by kind, helpers as a package (tests.helpers)."""
