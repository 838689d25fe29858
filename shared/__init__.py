"""What the EdgeFarm server, its agents and its tools share, one sub-package per concern.

* ``contract``: the wire contract (pydantic schemas, enums, selectors, the protocol
  version and the rules that belong to the wire); pydantic only.
* ``formats``: model files (TFLite reader and builder, ONNX, SNPE DLC), by content.
* ``datasets``: evaluation datasets (archive safety, the layouts, readers and
  pre-processing) for the server's upload checks, the agent's evaluation and the
  tools' calibration.
* ``client``: the typed HTTP SDK (``FarmClient`` for users, the agent's session).

Imports flow one way: contract <- formats <- datasets, contract <- client. Everything
here runs on Python 3.9.
"""

#: The version of the whole distribution (``pyproject.toml`` reads it from here).
__version__ = "0.1.0"
