"""Idempotency keys of client-made records (the field app's outbox).

The field app gives every record it makes a UUID before it is sent; the server keeps which
record each key created (table ``client_records``, migration 0019). Sending the same record
again, after a lost answer or from a second tab, finds the first record instead of creating
another one.

The key is claimed first (``INSERT … ON CONFLICT DO NOTHING``) and the record created after,
in the caller's transaction: a concurrent send of the same key waits on the claimed row
until the first transaction ends, then finds the key taken (or, if the first rolled back,
claims it itself). So a key never creates two records.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, text

from geogrid.access.policy import Principal
from geogrid.errors import Conflict, InvalidInput

_KIND = re.compile(r"[a-z_]{1,32}")


def once(
    conn: Connection,
    *,
    principal: Principal,
    client_id: uuid.UUID | None,
    kind: str,
    create: Callable[[], int],
) -> tuple[int, bool]:
    """Run ``create`` once per ``client_id``: the record it made, or the one made before.

    Runs inside the caller's transaction (the caller commits; a rollback frees the key).

    Parameters
    ----------
    conn
        A connection in a transaction.
    principal
        Who sends the record; a key belongs to the user who first used it.
    client_id
        The client-made UUID of the record; ``None`` just runs ``create``.
    kind
        What kind of record the key names (``case``, ``visit``, ``inspection``, ...).
    create
        Makes the record and returns its id; called at most once per key.

    Returns
    -------
    tuple[int, bool]
        The record's id and whether it was created now (``False``: the key was used before).

    Raises
    ------
    InvalidInput
        ``kind`` is not a lower-case word, or ``client_id`` is not a UUID.
    Conflict
        The key was used by another user or for another kind of record.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InvalidInput(f"record kind {kind!r} is not a lower-case word")
    if client_id is None:
        return int(create()), True
    if not isinstance(client_id, uuid.UUID):
        raise InvalidInput("client_id must be a UUID")
    claimed = conn.execute(
        text(
            "INSERT INTO client_records (client_id, user_id, kind) VALUES (:c, :u, :k) "
            "ON CONFLICT (client_id) DO NOTHING RETURNING client_id"
        ),
        {"c": client_id, "u": principal.user_id, "k": kind},
    ).first()
    if claimed is None:
        row = conn.execute(
            text("SELECT user_id, kind, record_id FROM client_records WHERE client_id = :c"),
            {"c": client_id},
        ).one()
        if row.user_id != principal.user_id or row.kind != kind:
            raise Conflict(
                "this client id was already used for another record (客户端编号已被占用)",
                detail={"client_id": str(client_id)},
            )
        if row.record_id is None:  # claimed earlier in this very transaction
            raise Conflict(
                "this record is being created already (记录正在创建)",
                detail={"client_id": str(client_id)},
            )
        return int(row.record_id), False
    record_id = int(create())
    conn.execute(
        text("UPDATE client_records SET record_id = :r WHERE client_id = :c"),
        {"r": record_id, "c": client_id},
    )
    return record_id, True
