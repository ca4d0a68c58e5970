"""One task's pipeline: run, repository setup, the live status, saving work, publishing."""
