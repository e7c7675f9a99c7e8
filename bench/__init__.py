"""The benchmark harness: CLI, suites, runner, results store, regression and the device farm."""
