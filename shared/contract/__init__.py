"""The wire contract between the EdgeFarm server, its agents and its clients.

Imported by every side; pydantic only, Python 3.9:

* ``schemas``: request and response bodies of the REST API;
* ``enums``: the str enums those bodies use;
* ``selectors``: device selector strings and their parsed form;
* ``rules``: what every side must compute the same way (the headline metric, metric
  display names, which runtime reads which model format, the default intervals,
  what makes an agent's report acceptable);
* ``digests``: content addresses (sha256 of files);
* ``ids``: bounded whole numbers (``DbId``, ``Count``) and ``parse_id``, the one reader
  of ids written as text (tokens, cookies, references);
* the protocol version, below.
"""

#: Bumped on any incompatible change of the wire contract. Agents send it in the
#: ``X-EdgeFarm-Protocol`` header; the server refuses other versions with 426.
PROTOCOL_VERSION = 1
PROTOCOL_HEADER = "X-EdgeFarm-Protocol"
