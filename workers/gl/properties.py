"""GL collector job and run properties (the wire names are the field names)."""

from __future__ import annotations

import enum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scheduler.errors import SchedulerError
from scheduler.limits import SupportedDatetime

GL_ACCOUNT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"

ACCOUNTS_RECEIVABLE = "1200"
CASH = "1000"
REVENUE = "4000"
LATE_FEE_INCOME = "4100"
BAD_DEBT_EXPENSE = "6100"


class GLCollector(enum.StrEnum):
    """A kind of billing document the GL collector turns into journal lines."""

    INVOICES = "invoices"
    """Regular invoices, by issue date: debit receivables, credit revenue."""
    PAYMENTS = "payments"
    """Payments received: debit cash, credit receivables."""
    LATE_FEES = "late_fees"
    """Late fees posted by dunning, by issue date: debit receivables, credit late-fee income."""
    WRITE_OFFS = "write_offs"
    """Balances written off by dunning: debit bad-debt expense, credit receivables."""
    INVOICE_VOIDS = "invoice_voids"
    """Invoices voided after they were collected: the reverse of their entry, dated the run's as-of date."""
    LATE_FEE_VOIDS = "late_fee_voids"
    """Late fees voided after they were collected: the reverse of their entry, dated the run's as-of date."""


REVERSES = {GLCollector.INVOICE_VOIDS: GLCollector.INVOICES, GLCollector.LATE_FEE_VOIDS: GLCollector.LATE_FEES}
"""The collector whose entries each void collector reverses."""


class GLPosting(BaseModel):
    """The two GL accounts a document's amount is posted to (a negative amount swaps the sides)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    debit: str = Field(pattern=GL_ACCOUNT_PATTERN, description="GL account debited with the document's amount")
    credit: str = Field(pattern=GL_ACCOUNT_PATTERN, description="GL account credited with the document's amount")

    @model_validator(mode="after")
    def _two_accounts(self) -> Self:
        if self.debit == self.credit:
            raise ValueError(f"debit and credit must be different GL accounts (both are {self.debit!r})")
        return self


class GLAccountMapping(BaseModel):
    """The GL accounts of each collector, with a conventional chart of accounts as the default."""

    model_config = ConfigDict(extra="forbid")

    invoices: GLPosting = GLPosting(debit=ACCOUNTS_RECEIVABLE, credit=REVENUE)
    payments: GLPosting = GLPosting(debit=CASH, credit=ACCOUNTS_RECEIVABLE)
    late_fees: GLPosting = GLPosting(debit=ACCOUNTS_RECEIVABLE, credit=LATE_FEE_INCOME)
    write_offs: GLPosting = GLPosting(debit=BAD_DEBT_EXPENSE, credit=ACCOUNTS_RECEIVABLE)

    def posting(self, collector: GLCollector) -> GLPosting:
        """The accounts of ``collector``; a void collector's are those of the entry it reverses, swapped."""
        if (reversed_collector := REVERSES.get(collector)) is not None:
            original = self.posting(reversed_collector)
            return GLPosting(debit=original.credit, credit=original.debit)
        posting: GLPosting = getattr(self, collector.value)
        return posting


class GLProperties(BaseModel):
    """What a GL collector job is configured with."""

    model_config = ConfigDict(extra="forbid")

    collectors: list[GLCollector] = Field(
        default_factory=lambda: list(GLCollector), min_length=1, max_length=len(GLCollector),
        description="Which kinds of documents the job collects",
    )
    gl_accounts: GLAccountMapping = Field(
        default_factory=GLAccountMapping, description="GL account codes debited and credited per collector"
    )

    @field_validator("collectors")
    @classmethod
    def _unique(cls, value: list[GLCollector]) -> list[GLCollector]:
        if len(set(value)) != len(value):
            raise ValueError("a collector is listed twice")
        return value

    @property
    def ordered_collectors(self) -> list[GLCollector]:
        """The configured collectors in the canonical order (chunks are planned in this order)."""
        return [c for c in GLCollector if c in self.collectors]


class GLRunProperties(BaseModel):
    """Inputs of a manual GL collector run."""

    model_config = ConfigDict(extra="forbid")

    as_of: SupportedDatetime | None = Field(
        default=None,
        description="Collect documents dated up to this instant (default: the run's tick or creation time)",
    )


class JournalUnbalanced(SchedulerError, ValueError):
    """A batch of journal lines whose debits and credits differ; nothing of the run is applied."""

    code = "journal_unbalanced"

    def __init__(self, where: str, debit: object, credit: object, detail: str = "") -> None:
        suffix = f"; {detail}" if detail else ""
        super().__init__(
            f"unbalanced journal in {where}: debits {debit} != credits {credit}{suffix}",
            details={"where": where, "debit": str(debit), "credit": str(credit)},
        )
