"""Ledger tables. Every row is append-only: triggers in the migration refuse UPDATE and DELETE."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime


class LedgerEntry(Base):
    """One event. `entry` is the RFC 8785 canonical JSON the leaf hash commits to."""

    __tablename__ = "ledger_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    type: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class LedgerRef(Base):
    """Which entries concern which subject ("clip:<id>", "case:<id>"): the custody index."""

    __tablename__ = "ledger_refs"

    ref: Mapped[str] = mapped_column(String(120), primary_key=True)
    idx: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_entries.idx"), primary_key=True)


class LedgerNode(Base):
    """A complete perfect subtree (level >= 1) of the Merkle tree.

    The node at (level, position) covers leaves [position * 2^level, (position+1) * 2^level).
    Storing them as they complete makes every proof and every historical root O(log n) reads.
    """

    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class SignedCheckpoint(Base):
    """A signed tree head (C2SP checkpoint in a signed note), one per append."""

    __tablename__ = "checkpoints"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CheckpointTimestamp(Base):
    """One TSA reply over one signed checkpoint (RFC 3161, evidence/timestamps.py asks for
    and checks them). Append-only (triggers refuse UPDATE/DELETE).

    One row per tree size: a second request for the same size returns the stored token, so
    a task run twice does not ask the TSA twice.
    """

    __tablename__ = "checkpoint_timestamps"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    token: Mapped[bytes] = mapped_column(LargeBinary)  # DER TimeStampResp
    gen_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    tsa: Mapped[str] = mapped_column(String(500))  # the URL it came from
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
