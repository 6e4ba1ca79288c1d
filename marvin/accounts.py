"""Accounts: anyone who talks to the bot gets one, linked to the directory by e-mail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from marvin.access import grants
from marvin.adapters.directory import Directory, DirectoryPerson
from marvin.models import Invocation
from marvin.store.db import insert_ignoring_conflicts
from marvin.store.tables import Account, Grant


@dataclass(frozen=True)
class Caller:
    account: Account
    person: DirectoryPerson | None
    roles: frozenset[str]
    grants: frozenset[str]

    @property
    def handle(self) -> str:
        return self.person.handle if self.person else self.account.display_name

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def has_grant(self, grant: str) -> bool:
        return grant in self.grants


async def account_for_chat_user(
    session: AsyncSession, transport: str, chat_user_id: str
) -> Account | None:
    return (
        await session.scalars(
            select(Account).where(
                Account.transport == transport, Account.chat_user_id == chat_user_id
            )
        )
    ).first()


async def known_account(session: AsyncSession, inv: Invocation) -> Account | None:
    """The caller's account when nothing about it needs writing (the usual case)."""
    account = await account_for_chat_user(session, inv.transport, inv.user_id)
    if account is None or account.directory_handle is None:
        return None  # new, or not linked yet: worth another look at the directory
    if inv.user_email and inv.user_email != account.email:
        return None
    return account


async def ensure_account(
    session: AsyncSession, inv: Invocation, person: DirectoryPerson | None, now: datetime
) -> tuple[Account, bool, str | None]:
    """The caller's account, created on first contact and linked to `person` (whom the
    directory knows by the caller's e-mail, looked up before this transaction).

    When the chat now gives an e-mail that isn't the linked person's, the link goes (and
    with it every role and grant) until someone links the account again: an account must
    not keep bob's rights after its e-mail became someone else's.

    Returns (account, created, the handle it was unlinked from, if it was).
    """
    values = {
        "transport": inv.transport,
        "chat_user_id": inv.user_id,
        "display_name": inv.user_name[:255],
        "email": inv.user_email,
        "state": "active",
        "created_at": now,
        "last_seen_at": now,
    }
    # Two first messages at once must not both create an account: insert-or-ignore, then read.
    result = await session.execute(
        insert_ignoring_conflicts(session, Account)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(Account.id)
    )
    created = result.scalar_one_or_none() is not None
    account = await account_for_chat_user(session, inv.transport, inv.user_id)
    assert account is not None  # inserted above, or already there
    account.last_seen_at = now
    unlinked = None
    if inv.user_email and account.email != inv.user_email:
        account.email = inv.user_email
        if account.directory_handle is not None and (
            person is None or person.handle != account.directory_handle
        ):
            unlinked = account.directory_handle
            account.directory_handle = None
            account.gitlab_username = None
            return account, created, unlinked
    if account.directory_handle is None and person is not None:
        account.directory_handle = person.handle
        account.gitlab_username = person.gitlab_username
    return account, created, unlinked


async def granted(session: AsyncSession, account_id: int, now: datetime) -> frozenset[str]:
    """The grants (not through a role) that hold now for the person the account is linked
    to, whichever of their chat accounts each was given to: `access mine` reads them by the
    person, and what it lists must be what the roles allow. Nobody's account holds none."""
    this = aliased(Account)
    person = select(this.directory_handle).where(this.id == account_id).scalar_subquery()
    names = await session.scalars(
        select(Grant.name)
        .join(Account, Account.id == Grant.account_id)
        .where(Account.directory_handle == person, *grants.current(now))
        .distinct()
    )
    return frozenset(names)


async def caller_for(account: Account, grants: frozenset[str], directory: Directory) -> Caller:
    """Who the account is: its directory entry (roles, their grants) and its own grants.
    An account not linked to the directory holds nothing, its own grants included."""
    if account.directory_handle is None:
        return Caller(account=account, person=None, roles=frozenset(), grants=frozenset())
    person = await directory.by_handle(account.directory_handle)
    roles = frozenset(person.roles) if person else frozenset()
    return Caller(
        account=account,
        person=person,
        roles=roles,
        grants=frozenset(person.grants if person else ()) | grants,
    )


async def account_for_handle(session: AsyncSession, handle: str) -> Account | None:
    return (
        await session.scalars(
            select(Account).where(Account.directory_handle == handle).order_by(Account.id)
        )
    ).first()
