"""The one error type of the dataset package: ``DatasetError``, raised for an unsafe
archive or folder, for files that do not form the named layout, and for a sample that
cannot be read. Its message is meant for a person and names the offending member,
file or sample id."""


class DatasetError(ValueError):
    """The archive or folder is unsafe or does not hold the named layout; the message says why."""
