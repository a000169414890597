"""Tests of the `vmpooler` command (vmpooler_cli)."""
