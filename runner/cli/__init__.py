"""The command line: nightcrew serve/worker/run/context/doctor/demo."""
