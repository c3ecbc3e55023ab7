"""Real-style custom gradients, each checked by one declaration and each with a planted bug
that the check named in its docstring must fail (tests/test_ops_examples.py)."""
