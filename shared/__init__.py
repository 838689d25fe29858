"""The wire contract between the EdgeFarm server, its agents and its CLI.

Everything here is imported by both sides and must run on Python 3.9 with only
pydantic installed: request and response schemas (`schemas`), enumerations
(`enums`), device selectors (`selectors`), and the model-file and dataset
layouts that both sides read (`formats`, `layouts`).
"""

__version__ = "0.1.0"

#: Bumped on any incompatible change of the wire contract. Agents send it in the
#: ``X-EdgeFarm-Protocol`` header; the server refuses other versions with 426.
PROTOCOL_VERSION = 1
PROTOCOL_HEADER = "X-EdgeFarm-Protocol"
