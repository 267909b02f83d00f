"""Set-up, run and test tooling (standard library only)."""
