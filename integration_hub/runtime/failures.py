"""What a failure means, in one table (in the style of Airbyte's error handling).

Each row maps an exception class to how the runtime treats it: the outcome written on
the attempt row, how the admission governor counts it for the target's circuit,
whether it is retried, which team owns it once it needs a person, and the category of
the exception record. A failure is looked up by class inheritance: the most specific
registered class wins, so a workflow or connector that raises its own subclass of
``Permanent`` inherits that row until it registers one of its own.

The runtime registers the rows of the connector taxonomy (``connectors.errors``) here.
Workflows add rows for their exceptions in their declaration (``Workflow.failures``);
a row whose team is ``DATA_OWNER`` goes to the team the workflow names as the owner
of its data.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.errors import (
    ConnectorError,
    MappingError,
    NeedsConfiguration,
    Permanent,
    RateLimited,
    Retryable,
)
from integration_hub.runtime.models import DeliveryAttempt, ExceptionRecord

Outcome = DeliveryAttempt.Outcome
Team = ExceptionRecord.Team
Category = ExceptionRecord.Category

DATA_OWNER = "data_owner"
"""Stands for the team that owns the data of the business transaction's workflow."""


@dataclass(frozen=True)
class Failure:
    """One row of the table.

    ``governor`` is ``"failure"`` (counts towards opening the circuit),
    ``"rate_limited"`` (sets a wait from the error's ``retry_after``) or
    ``"neutral"`` (the target answered, it is healthy). ``category`` is the exception
    record's category when the failure dead-letters: at once when ``retry`` is False,
    after the retry budget otherwise. ``backoff`` False retries at once (nothing says
    the target is struggling, e.g. the worker died).
    """

    outcome: str
    governor: str
    retry: bool
    team: str
    category: str
    backoff: bool = True


_table: dict[type[BaseException], Failure] = {}


def register_failure(exc_class: type[BaseException], failure: Failure) -> None:
    """Add (or, for the same class, replace) a row."""
    _table[exc_class] = failure


def failure_of(exc: BaseException) -> Failure:
    """The row of the most specific registered class ``exc`` is an instance of."""
    for cls in type(exc).__mro__:
        if cls in _table:
            return _table[cls]
    return _table[Exception]


class WorkerLost(Retryable):
    """The worker died during the call (found by the sweeper): the outcome is unknown."""

    def __init__(self) -> None:
        super().__init__(
            "worker lost during the call; outcome unknown, the next attempt looks the document up first",
            outcome_unknown=True,
        )


_UNEXPECTED = Failure(Outcome.ERROR, "failure", retry=True, team=Team.IT_OPERATIONS, category=Category.PROCESSING)
_TRANSIENT = Failure(
    Outcome.RETRYABLE, "failure", retry=True, team=Team.IT_OPERATIONS, category=Category.RETRIES_EXHAUSTED
)

for _cls, _failure in {
    # A bug or an unforeseen error: retried (it may be a passing condition), then IT's.
    Exception: _UNEXPECTED,
    ConnectorError: _UNEXPECTED,
    Retryable: _TRANSIENT,
    RateLimited: Failure(
        Outcome.RATE_LIMITED, "rate_limited", retry=True, team=Team.IT_OPERATIONS, category=Category.RETRIES_EXHAUSTED
    ),
    Permanent: Failure(Outcome.PERMANENT, "neutral", retry=False, team=DATA_OWNER, category=Category.REJECTED),
    NeedsConfiguration: Failure(
        Outcome.PERMANENT, "neutral", retry=False, team=Team.IT_OPERATIONS, category=Category.CONFIGURATION
    ),
    MappingError: Failure(Outcome.PERMANENT, "neutral", retry=False, team=DATA_OWNER, category=Category.MAPPING),
    WorkerLost: Failure(
        Outcome.LOST, "failure", retry=True, team=Team.IT_OPERATIONS, category=Category.RETRIES_EXHAUSTED,
        backoff=False,
    ),
}.items():
    register_failure(_cls, _failure)


def outcome_unknown(exc: BaseException) -> bool:
    """Whether the failed call may still have had its effect on the target.

    A connector error says so itself (``Retryable.outcome_unknown``; any other
    connector error is an answer, so the outcome is known). Anything else escaped
    from the middle of a call and is treated as unknown.
    """
    if isinstance(exc, Retryable):
        return exc.outcome_unknown
    return not isinstance(exc, ConnectorError)
