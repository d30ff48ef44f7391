"""Layer 3, the model toolkit: device and precision, kernels, tokenization and batching, the
one training loop, victims (loading, saving, checking), what each model family looks like
inside, and distillation losses. Imports the base and data."""
