"""Helpers of the real-SLURM test (tests/test_slurm.py): a throw-away cluster and the test profile."""
