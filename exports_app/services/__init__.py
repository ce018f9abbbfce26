"""The export workflows views, tasks and commands call (see the modules)."""
