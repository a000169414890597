"""Clients written for the original vmpooler, replayed against ours: the README's compatibility promise."""
