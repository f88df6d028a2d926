"""CSV downloads: a view that offers ``?format=csv`` returns the CSV text itself; errors become a
one-line CSV so a spreadsheet shows what went wrong."""

import csv
import io
from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if isinstance(data, str):
            return data.encode()
        error = data.get("error", {}) if isinstance(data, dict) else {}
        return to_csv([["error", "message"], [error.get("code", ""), error.get("message", "")]]).encode()


def to_csv(rows: list[list[Any]]) -> str:
    """Rows as CSV text; cells that a spreadsheet would run as formulas are quoted with a leading '."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([_safe(cell) for cell in row])
    return buffer.getvalue()


def _safe(cell: Any) -> Any:
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


def csv_attachment(rows: list[list[Any]], filename: str) -> Response:
    """A CSV download of ``rows`` named ``filename``."""
    return Response(to_csv(rows), headers={"Content-Disposition": f'attachment; filename="{filename}"'})
