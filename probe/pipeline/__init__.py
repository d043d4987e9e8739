"""Running work over many encoders: the pair runner, split plans, executors."""
