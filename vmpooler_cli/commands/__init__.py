"""The `vmpooler` subcommands, grouped by what they act on: VMs, pools, tokens."""
