"""Set one column of many rows, each to its own value, in one statement."""

from collections.abc import Mapping
from typing import Any

from django.db import connection
from django.db.models import Field, Model


def update_column(model: type[Model], column: str, values: Mapping[int, Any]) -> None:
    """``UPDATE ... SET column = v.value FROM (VALUES (pk, value), ...)`` on PostgreSQL (one short
    statement, where Django's ``bulk_update`` writes a CASE with a branch per row); ``bulk_update``
    elsewhere."""
    if not values:
        return
    if connection.vendor != "postgresql":
        rows = [model(pk=pk, **{column: value}) for pk, value in values.items()]
        model._default_manager.bulk_update(rows, [column])
        return
    table = connection.ops.quote_name(model._meta.db_table)
    field = model._meta.get_field(column)
    assert isinstance(field, Field) and field.column and model._meta.pk and model._meta.pk.column  # a concrete column
    name = connection.ops.quote_name(field.column)
    pk = connection.ops.quote_name(model._meta.pk.column)
    cast = field.db_type(connection)
    placeholders = ", ".join(["(%s, %s)"] * len(values))
    params: list[Any] = []
    for key, value in values.items():
        params += [key, value]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {name} = v.value::{cast} FROM (VALUES {placeholders}) AS v(id, value) "  # noqa: S608 - names are quoted, values are parameters
            f"WHERE {table}.{pk} = v.id",
            params,
        )
