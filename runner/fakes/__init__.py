"""Stand-ins for the model API: scripted replies, a local Messages server. Tests, demo and bench only."""
