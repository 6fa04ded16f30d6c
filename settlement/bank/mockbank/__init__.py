"""Mock bank: rehearse every bank behaviour (accept, reject, settle, return, statements, faults).

`config.load(path)` -> MockBankConfig; `app.create_app(config)` -> Starlette;
`server.serve(config_path)` runs it. Core logic (Bank, BankStore, Clock) has no HTTP.
"""
