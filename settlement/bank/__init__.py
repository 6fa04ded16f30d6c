"""Bank adapters: the gateway client and the mock bank server (mockbank/)."""
