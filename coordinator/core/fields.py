"""Serializer fields shared by the API modules."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from tessera_client.signing import b64decode, b64encode


@extend_schema_field(OpenApiTypes.BYTE)
class Base64Field(serializers.Field):
    """Bytes carried as strict base64 text, with a limit on the decoded size."""

    def __init__(self, *, max_bytes: int, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> bytes:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a base64 string")
        if len(data) > (self.max_bytes * 4) // 3 + 4:
            raise serializers.ValidationError(f"must decode to at most {self.max_bytes} bytes")
        try:
            decoded = b64decode(data)
        except ValueError as error:
            raise serializers.ValidationError("is not valid base64") from error
        if len(decoded) > self.max_bytes:
            raise serializers.ValidationError(f"must decode to at most {self.max_bytes} bytes")
        return decoded

    def to_representation(self, value: bytes) -> str:
        return b64encode(bytes(value))


SHA256_HEX = r"^[0-9a-f]{64}$"
