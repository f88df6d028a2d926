from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from core.errors import ValidationFailed


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=``; responses carry ``count``, ``next``, ``previous`` and ``results``.
    A ``limit`` or ``offset`` that is not a whole number (or is given twice) is a 400, not
    quietly read as the default."""

    default_limit = 50
    max_limit = 500

    def get_limit(self, request: Request) -> int | None:
        if self.limit_query_param not in request.query_params:
            return self.default_limit
        return min(_whole(request, self.limit_query_param, least=1), self.max_limit)

    def get_offset(self, request: Request) -> int:
        if self.offset_query_param not in request.query_params:
            return 0
        return _whole(request, self.offset_query_param, least=0)


def _whole(request: Request, name: str, *, least: int) -> int:
    values = request.query_params.getlist(name)
    try:
        if len(values) != 1:
            raise ValueError
        value = int(values[0])
        if value < least:
            raise ValueError
    except ValueError:
        raise ValidationFailed(
            f"`{name}` must be one whole number, at least {least}.", fields={name: [f"A whole number >= {least}."]}
        ) from None
    return value
