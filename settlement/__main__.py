"""`settlement` and `python -m settlement`: hold stop signals, then load the CLI.

The CLI takes about a second to import; a SIGTERM in that time is held (see
`settlement.runtime.startup`) rather than killing a worker that is starting.
"""

from settlement.runtime import startup


def main() -> None:
    startup.hold()
    from settlement.cli.main import main as cli  # after hold(): this import is the slow part

    cli()


if __name__ == "__main__":
    main()
