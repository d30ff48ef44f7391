"""Layer 2, data: typed examples and data sets, where a data set comes from (folders, the hub,
generators), seeded subsets, and the built-in generated data sets. Imports the base only."""
