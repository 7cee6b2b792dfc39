from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.intent_response_headers import IntentResponseHeaders


T = TypeVar("T", bound="IntentResponse")


@_attrs_define
class IntentResponse:
    """The upstream's answer.

    Attributes:
        duration_ms (float): Time the exchange took.
        headers (IntentResponseHeaders): Upstream headers: repeated ones joined with `, `, except `set-cookie`,
            which is always a list of strings.
        status (int): Upstream status.
        body_base64 (None | str | Unset): Body, base64, when it is not JSON.
        json (Any | Unset): Body, when it is JSON (any JSON value).
    """

    duration_ms: float
    headers: IntentResponseHeaders
    status: int
    body_base64: None | str | Unset = UNSET
    json: Any | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        duration_ms = self.duration_ms

        headers = self.headers.to_dict()

        status = self.status

        body_base64: None | str | Unset
        if isinstance(self.body_base64, Unset):
            body_base64 = UNSET
        else:
            body_base64 = self.body_base64

        json = self.json

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "duration_ms": duration_ms,
                "headers": headers,
                "status": status,
            }
        )
        if body_base64 is not UNSET:
            field_dict["body_base64"] = body_base64
        if json is not UNSET:
            field_dict["json"] = json

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.intent_response_headers import IntentResponseHeaders  # noqa: PLC0415

        d = dict(src_dict)
        duration_ms = d.pop("duration_ms")

        headers = IntentResponseHeaders.from_dict(d.pop("headers"))

        status = d.pop("status")

        def _parse_body_base64(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        body_base64 = _parse_body_base64(d.pop("body_base64", UNSET))

        json = d.pop("json", UNSET)

        intent_response = cls(
            duration_ms=duration_ms,
            headers=headers,
            status=status,
            body_base64=body_base64,
            json=json,
        )

        intent_response.additional_properties = d
        return intent_response

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
