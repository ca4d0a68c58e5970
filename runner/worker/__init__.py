"""The worker process: the RQ worker, its job entry points and the processes it starts."""
