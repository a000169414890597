"""vmpooler core: configuration, aliases, Redis inventory and checkout, metrics, provider interface.

The daemon (`vmpoolerd`) and the command line (`vmpooler`) are thin front ends over this package.
"""

__version__ = "0.1.0"
