"""Dunning job and run properties (the wire names are the field names) and the tier ladder rules."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scheduler.limits import SupportedDate, Text


class DunningAction(enum.StrEnum):
    NOTICE = "notice"
    """Send the account a dunning notice."""
    LATE_FEE = "late_fee"
    """Post the tier's late fee as a ``LATE_FEE`` invoice."""
    SUSPEND = "suspend"
    """Suspend the account's service (reinstated when it is paid up)."""
    WRITE_OFF = "write_off"
    """Write off the account's past-due invoices."""
    WEBHOOK = "webhook"
    """Notify an external system (recorded as queued on the item)."""


REINSTATE = "reinstate"
"""The action staged with a clearance of a suspended account."""


class DunningStrategy(enum.StrEnum):
    OLDEST_OPEN_INVOICE = "oldest_open_invoice"
    """Days past due of the oldest non-disputed open invoice with a balance decide the tier."""


class DunningTier(BaseModel):
    """One rung of the ladder: accounts at least ``min_days_past_due`` late reach it."""

    model_config = ConfigDict(extra="forbid")

    code: int = Field(ge=0, le=99, description="Tier code; 0 is 'No dunning'")
    name: Text = Field(min_length=1, max_length=100)
    min_days_past_due: int = Field(ge=0, le=3650)
    actions: list[DunningAction] = Field(default_factory=list, max_length=len(DunningAction))
    late_fee: Decimal | None = Field(default=None, gt=0, max_digits=18, decimal_places=2)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.actions)) != len(self.actions):
            raise ValueError(f"tier {self.code}: an action is listed twice")
        if DunningAction.LATE_FEE in self.actions and self.late_fee is None:
            raise ValueError(f"tier {self.code}: the late_fee action needs a late_fee amount")
        if self.late_fee is not None and DunningAction.LATE_FEE not in self.actions:
            raise ValueError(f"tier {self.code}: late_fee is set but the late_fee action is not listed")
        if self.code == 0 and (self.actions or self.min_days_past_due):
            raise ValueError("tier 0 is 'No dunning': it has no actions and 0 days")
        return self


def default_tiers() -> list[DunningTier]:
    return [
        DunningTier(code=1, name="Reminder", min_days_past_due=1, actions=[DunningAction.NOTICE]),
        DunningTier(code=2, name="Late fee", min_days_past_due=30,
                    actions=[DunningAction.NOTICE, DunningAction.LATE_FEE], late_fee=Decimal("25.00")),
        DunningTier(code=3, name="Suspension", min_days_past_due=60,
                    actions=[DunningAction.NOTICE, DunningAction.SUSPEND]),
        DunningTier(code=4, name="Write-off", min_days_past_due=120,
                    actions=[DunningAction.WRITE_OFF, DunningAction.WEBHOOK]),
    ]


class DunningProperties(BaseModel):
    """What a dunning job is configured with."""

    model_config = ConfigDict(extra="forbid")

    account_category: Text | None = Field(default=None, max_length=32, description="Only accounts of this category")
    minimum_account_due: Decimal = Field(
        default=Decimal("0"), ge=0, max_digits=18, decimal_places=2,
        description="Accounts owing less than this past due are not escalated",
    )
    strategy: DunningStrategy = DunningStrategy.OLDEST_OPEN_INVOICE
    tiers: list[DunningTier] = Field(default_factory=default_tiers, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _ladder(self) -> Self:
        codes = [t.code for t in self.tiers]
        if len(set(codes)) != len(codes):
            raise ValueError("tier codes must be unique")
        for lower, higher in zip(self.tiers, self.tiers[1:], strict=False):
            if higher.code <= lower.code:
                raise ValueError("tiers must be listed in ascending code order")
            if higher.min_days_past_due <= lower.min_days_past_due:
                raise ValueError(
                    f"tier {higher.code} must need more days past due than tier {lower.code}"
                )
        if not self.ladder:
            raise ValueError("at least one tier above 0 is needed")
        return self

    @property
    def ladder(self) -> list[DunningTier]:
        """The tiers above 0, ascending."""
        return [t for t in self.tiers if t.code > 0]

    @property
    def no_dunning_name(self) -> str:
        return next((t.name for t in self.tiers if t.code == 0), "No dunning")

    def target_tier(self, amount_due: Decimal, days_past_due: int) -> int:
        """The tier an account owing ``amount_due`` for ``days_past_due`` days belongs at."""
        if amount_due <= 0 or amount_due < self.minimum_account_due:
            return 0
        reached = [t.code for t in self.ladder if t.min_days_past_due <= days_past_due]
        return max(reached, default=0)


class DunningRunProperties(BaseModel):
    """Inputs of a manual dunning run."""

    model_config = ConfigDict(extra="forbid")

    as_of: SupportedDate | None = Field(default=None,
                                        description="Evaluate as of this date (default: the run's date)")
    account_numbers: list[Annotated[Text, Field(min_length=1, max_length=32)]] | None = Field(
        default=None, min_length=1, max_length=10_000, description="Only these accounts"
    )
