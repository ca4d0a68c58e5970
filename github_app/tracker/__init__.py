"""The tracker as task store: the lifecycle, the status comment, the signed checkpoint, the event log."""
