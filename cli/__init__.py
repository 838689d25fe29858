"""``edgefarm``: the command-line client of an EdgeFarm server.

The package owns the user-facing CLI only. Its layers, from the outside in:

* ``main``: the argparse tree, global flags and the exit-code policy;
* ``commands/<resource>.py``: one module per resource (models, datasets, jobs,
  results, devices), each registering its subcommands and their handlers;
* ``client``: one method per REST endpoint, errors sorted into ``CliError``;
* ``config``: where the server URL and token come from;
* ``output``: tables, JSON and messages (stdout for results, stderr for talk);
* ``transfer``: streamed uploads with a progress bar, folder packing.

It imports ``shared`` (the wire schemas), ``httpx`` and ``rich`` and nothing
else, and runs on Python 3.9.
"""

from edgefarm.shared import __version__

__all__ = ["__version__"]
