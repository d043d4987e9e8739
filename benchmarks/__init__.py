"""Speed benchmarks: each case times probe against a baseline run in the same process."""
