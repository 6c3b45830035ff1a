"""Exporters: flowkit's runs told to other systems as they happen (run listeners) or after the fact.

- :mod:`flowkit.export.openlineage`: OpenLineage run events, sent by the
  ``openlineage-python`` client when it is configured (``OPENLINEAGE_URL``,
  ``OPENLINEAGE_CONFIG`` or an ``openlineage.yml``), built by
  :mod:`flowkit.export.openlineage_events` from the same records the store keeps.
"""
