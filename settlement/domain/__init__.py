"""Pure domain: money, payments, merchants, errors. No I/O, no adapters."""
