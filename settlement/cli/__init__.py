"""`settlement` command line: subcommands call bootstrap, nothing else."""
