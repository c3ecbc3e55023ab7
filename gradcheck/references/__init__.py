"""The two references a hand gradient is checked against; neither imports a derivation."""
