"""``edgefarm``: the command-line client of an EdgeFarm server, and the main job.

The package owns the user-facing CLI. Its layers, from the outside in:

* ``main``: the argparse tree, global flags and the exit-code policy;
* ``commands/<resource>.py``: one module per resource (models, datasets, jobs,
  results, devices), each registering its subcommands and their handlers;
* ``errors``: ``CliError`` and the exit codes, and the one mapping of the SDK's
  errors to them (HTTP goes through ``edgefarm.shared.client.FarmClient``);
* ``config``: where the server URL and token come from;
* ``output``: tables, JSON and messages (stdout for results, stderr for talk);
* ``transfer``: streamed uploads with a progress bar, folder packing;
* ``waiting``: the live display of the SDK's job wait loop.

The main job (``python -m edgefarm.cli.demo``, ``make demo``) lives here too, on the
same SDK and output code: ``demo`` (its steps in order), ``demo_processes`` (the
server and agent processes it supervises), ``demo_farm`` (what it asks the farm).

The CLI imports ``shared`` (the wire schemas and the SDK), ``httpx`` and ``rich``
(the tools only for ``edgefarm tools`` and ``sweep``), and runs on Python 3.9.
"""

from edgefarm.shared import __version__

__all__ = ["__version__"]
