"""The reliability suite (`make chaos`): scenarios that break clickbus under click load and account for every click.

`python -m tests.chaos [--short] [scenario ...]` runs them and prints one table;
`tests/chaos/test_short.py` runs the short version of each in `make test`.
"""
