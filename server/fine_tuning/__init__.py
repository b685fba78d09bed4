"""/v1/fine_tuning/jobs: validate training data, queue jobs, run the worker process, serve the adapter."""
