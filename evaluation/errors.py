"""The evaluation's errors: VExpressError subclasses with one-line messages naming the file."""

from modules.errors import VExpressError


class EvaluationError(VExpressError):
    """A video, manifest or weight file the evaluation cannot use; the message says which and why."""


class WeightsError(EvaluationError):
    """A weight file that is missing, unreadable or does not fit its network."""


class MissingWeightsError(WeightsError):
    """A weight file that is not there: the metric needing it is skipped, with this one line."""
