"""GitHub Actions runner mode: ``nightcrew action`` runs the App's engine inside a workflow job.

The event file is routed by the App's own routing, the task runs in this process (no Redis, no
queue) through the same pipeline, review round and status comment, and the issue stays the task
store: a workflow run that was cancelled or ran out of time leaves its task queued with its
signed checkpoint, and the next run's drain takes it up from there.
"""
