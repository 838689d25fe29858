"""Exception types shared across the agent, so that the worker, the clock and
the evaluation pipeline can raise and sort them without importing each other."""


class Cancelled(Exception):
    """The run was cancelled (by the server, or the agent is stopping) while it was
    working; the message says where it stopped. Not a failure of the run."""


class DatasetModelMismatch(ValueError):
    """The dataset and the model do not fit together (task, number of classes, output
    shape); the message names both sides and, where it helps, the sample."""
