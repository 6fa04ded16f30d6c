"""Worker process runtime: signals, drain, exit codes."""
