"""The `Upload` scalar as this API reads it: the HTTP edge (api/http_edge.py, api/multipart.py)
puts a token in the place of each multipart file part, and only such a token is a file.
Anything else a client puts in an `Upload` variable (a string, an object: a file sent as
JSON) is refused while the variables are read, naming the variable, as any wrong scalar is;
Strawberry's own definition takes any value."""

from __future__ import annotations

from strawberry.types.scalar import scalar

from api.multipart import TOKEN


def _file_part(value: object) -> str:
    if isinstance(value, str) and value.startswith(TOKEN):
        return value
    raise ValueError("not a file part: send the file as a multipart upload")


UPLOAD = scalar(
    name="Upload",
    description="Represents a file upload.",
    serialize=lambda v: v,
    parse_value=_file_part,
)
