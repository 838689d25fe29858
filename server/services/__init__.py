"""The server's domain operations, one module per area; the REST API (``api/``)
and the dashboard (``web/``) both call them and neither holds a rule of its own.

* ``leases``: enrollment, device heartbeats, claim and lease assembly, renewal,
  release, reports, the expiry sweep (the SQL is ``edgefarm.server.queue``'s).
* ``jobs``: submit (task, dataset, reference, fan-out), list, get, cancel; runs.
* ``catalog``: models and datasets: store an upload, register, find, list,
  delete, and the stored file a download serves.
* ``results``: filters, one result, the family comparison, CSV.
* ``devices``: list, describe, an admin's changes. ``tokens``: create, list, revoke.
* ``overview``: server identity and the dashboard's counts and menus.
* ``watch``: the regression watch: series history, baselines, per-family
  thresholds, the check of each new result, regressions.
* ``webhooks``: registrations, the outbox rows that announce events (sent by
  ``edgefarm.server.outbox``), deliveries, devices going offline.
* ``lookups`` (rows by id, sha256 or name), ``references`` (output-agreement
  references), ``convert`` (rows -> contract schemas), ``errors`` (what they raise).

Conventions. A service function is one operation and owns its transaction: it
opens ``ctx.db.write()`` (or ``ctx.db.read()``) itself and wakes the long polls
(``ctx.waker.notify(device_ids)``: the devices given work) only after the
write has committed. What it calls with
a session (``queue``, ``auth``, ``lookups``, ``references``, ``convert`` and the
private helpers here) takes that session and never commits. Services are
synchronous (the API runs them in its thread pool), answer with contract
schemas, never rows, and refuse with ``errors.DomainError``; they import
nothing from FastAPI or Starlette, ``api`` or ``web``.
"""
