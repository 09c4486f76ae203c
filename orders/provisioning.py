"""Writes that set up reference data and access: instruments, trading accounts, traders, their
groups and API tokens. Every function is idempotent (get-or-create or update-or-create under
the table's unique constraint), so `seed_demo` and `create_trader` can run any number of times
and two of them racing still make one row each.

Invalid input raises ProvisioningError before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework.authtoken.models import Token

from .exceptions import ProvisioningError
from .models import Account, AssetClass, Instrument
from .selectors import READ_ALL_GROUPS

# The groups a trader may be given with create_trader --role: each reads every account.
ROLES: tuple[str, ...] = tuple(sorted(READ_ALL_GROUPS))

_ACCOUNT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CURRENCY = re.compile(r"^[A-Z]{3,8}$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9_.-]*$")


@dataclass(frozen=True)
class InstrumentSpec:
    symbol: str
    asset_class: str
    base_currency: str
    quote_currency: str
    lot_size: Decimal
    min_quantity: Decimal
    tick_size: Decimal
    reference_price: Decimal | None = None


@dataclass(frozen=True)
class SuperuserResult:
    user: Any
    created: bool
    # The password set in this call (created, or changed on request); None: left as it was.
    password_set: str | None


# --- validation -------------------------------------------------------------------------------


def _check_currency(currency: str) -> None:
    if not _CURRENCY.match(currency):
        raise ProvisioningError(
            f"currency {currency!r} must be an upper-case code like USD",
            fields={"currency": ["must be an upper-case code like USD"]},
        )


def _check_account_code(code: str) -> None:
    max_length = Account._meta.get_field("code").max_length or 32
    if not _ACCOUNT_CODE.match(code) or len(code) > max_length:
        rule = (
            f"1 to {max_length} letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
        raise ProvisioningError(f"account code {code!r}: {rule}", fields={"account": [rule]})


def _check_username(username: str) -> None:
    user_model = get_user_model()
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    try:
        field.run_validators(username)
        if not username:
            raise ValidationError("may not be blank")
    except ValidationError as error:
        rule = " ".join(error.messages)
        raise ProvisioningError(
            f"user name {username!r}: {rule}", fields={"name": [rule]}
        ) from None


def _check_positive_decimal(name: str, value: Any) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ProvisioningError(
            f"{name} must be a positive Decimal, not {value!r}",
            fields={name: ["must be a positive Decimal"]},
        )


# --- instruments ------------------------------------------------------------------------------


def instrument_upsert(*, spec: InstrumentSpec) -> tuple[Instrument, bool]:
    """Create the instrument or bring its terms up to `spec`. Leaves is_active alone, so an
    instrument an operator closed for trading stays closed. Answers (instrument, created)."""
    if not _SYMBOL.match(spec.symbol):
        raise ProvisioningError(f"symbol {spec.symbol!r} must be upper-case letters and digits")
    if spec.asset_class not in AssetClass.values:
        raise ProvisioningError(f"unknown asset class {spec.asset_class!r}")
    if spec.asset_class != AssetClass.EQUITY:  # an equity's base is its own symbol
        _check_currency(spec.base_currency)
    _check_currency(spec.quote_currency)
    for name in ("lot_size", "min_quantity", "tick_size"):
        _check_positive_decimal(name, getattr(spec, name))
    if spec.reference_price is not None:
        _check_positive_decimal("reference_price", spec.reference_price)
    return Instrument.objects.update_or_create(
        symbol=spec.symbol,
        defaults={
            "asset_class": spec.asset_class,
            "base_currency": spec.base_currency,
            "quote_currency": spec.quote_currency,
            "lot_size": spec.lot_size,
            "min_quantity": spec.min_quantity,
            "tick_size": spec.tick_size,
            "reference_price": spec.reference_price,
        },
    )


# --- accounts, users, groups, tokens ----------------------------------------------------------


def account_ensure(
    *, code: str, currency: str | None = None, name: str = ""
) -> tuple[Account, bool]:
    """The account with this code, created (in `currency`, USD if not given) when missing.
    An existing account in another currency than the one asked for raises ProvisioningError:
    an account's currency is never changed behind its positions' back."""
    _check_account_code(code)
    if currency is not None:
        _check_currency(currency)
    account, created = Account.objects.get_or_create(
        code=code, defaults={"currency": currency or "USD", "name": name}
    )
    if currency is not None and account.currency != currency:
        raise ProvisioningError(
            f"account {code} exists with currency {account.currency}, not {currency}",
            fields={"currency": [f"account {code} is in {account.currency}"]},
        )
    return account, created


def trader_ensure(*, username: str) -> tuple[Any, bool]:
    """The user with this name, created when missing with no usable password (traders use
    their API token). Answers (user, created)."""
    _check_username(username)
    user_model = get_user_model()
    return user_model.objects.get_or_create(
        **{user_model.USERNAME_FIELD: username}, defaults={"password": make_password(None)}
    )


def account_grant(*, account: Account, user: Any) -> None:
    """Let the user trade and see the account (a no-op when already granted)."""
    account.users.add(user)


def groups_ensure(*, names: tuple[str, ...] | list[str]) -> list[Group]:
    return [Group.objects.get_or_create(name=name)[0] for name in names]


def user_role_add(*, user: Any, role: str) -> None:
    """Put the user in the group of `role` (one of ROLES)."""
    if role not in ROLES:
        raise ProvisioningError(
            f"unknown role {role!r}; choose one of {', '.join(ROLES)}",
            fields={"role": [f"one of {', '.join(ROLES)}"]},
        )
    (group,) = groups_ensure(names=[role])
    user.groups.add(group)


def api_token_ensure(*, user: Any) -> Token:
    """The user's API token, created on first call; the same key on every later call."""
    token, _ = Token.objects.get_or_create(user=user)
    return token


def superuser_ensure(
    *, username: str, password: str | None, default_password: str
) -> SuperuserResult:
    """A superuser with this name. Created with `password` (or `default_password` when None);
    an existing one keeps its password unless `password` is given, and is made an active
    superuser if it was not one."""
    _check_username(username)
    user_model = get_user_model()
    with transaction.atomic():
        user = (
            user_model.objects.select_for_update()
            .filter(**{user_model.USERNAME_FIELD: username})
            .first()
        )
        if user is None:
            chosen = password if password is not None else default_password
            user = user_model.objects.create_superuser(
                **{user_model.USERNAME_FIELD: username}, email="", password=chosen
            )
            return SuperuserResult(user=user, created=True, password_set=chosen)
        changed = [
            name for name in ("is_active", "is_staff", "is_superuser") if not getattr(user, name)
        ]
        for name in changed:
            setattr(user, name, True)
        if password is not None and not user.check_password(password):
            user.set_password(password)
            changed.append("password")
        if changed:
            user.save(update_fields=changed)
    return SuperuserResult(user=user, created=False, password_set=password)
