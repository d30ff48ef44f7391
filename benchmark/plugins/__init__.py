"""Layer 4, the plugin API: hook specifications, typed hyperparameters, the plugin base classes
and the contexts they receive, trigger helpers, and the registry. Imports the layers below."""
