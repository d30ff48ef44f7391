"""Layer 5, the harness: suites and budgets, cells, scenarios and their store, calling a
defense of any kind (in this process or in an isolated child), executors, and the runner."""
