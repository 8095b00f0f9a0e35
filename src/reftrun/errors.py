"""Errors with no dependencies, so that code the GPU benchmark loads needs nothing beyond torch and transformers."""


class ConfigError(ValueError):
    """A bad config value; the CLI prints it as one line and exits 2."""
