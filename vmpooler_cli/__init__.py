"""The `vmpooler` command: check out, return and inspect pooled VMs, over the API or directly on Redis.

Kept import-light on purpose: `vmpooler --help` loads click and this package's small modules only;
httpx, redis, rich, ruamel and vmpooler_core load when a command needs them.
"""

__version__ = "0.1.0"
