"""Code the tests share: small generated worlds, tiny models and stores, the fault-table
runner, the serving set-up. Imported as `support.<module>` (tests/ is on sys.path via
tests/conftest.py); fixtures built on it live in the conftest.py files."""
