"""The `netboot` subcommands, one module each: `add_arguments(parser)` and `run(args) -> int`.

They are the only code that knows about argparse; the work itself lives in the library
modules (`netboot.server`, `netboot.image.*`). Nothing is imported here, so `cli` loads
only the chosen subcommand.
"""
