from settlement.cli.main import main

main()
