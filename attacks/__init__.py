"""Built-in attack plugins, one module each; listed in ``registry.toml``."""
