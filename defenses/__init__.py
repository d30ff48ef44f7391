"""Built-in defense plugins, one module each; listed in ``registry.toml``."""
