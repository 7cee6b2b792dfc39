from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="SessionView")


@_attrs_define
class SessionView:
    """One MCP session as the admin API shows it (never the upstream's session id).

    Attributes:
        client (str): Client that owns it.
        created_ms (int): Created, Unix ms.
        id (str): Proxy session id.
        route (str): Route.
        target (str): Pinned upstream target.
    """

    client: str
    created_ms: int
    id: str
    route: str
    target: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        client = self.client

        created_ms = self.created_ms

        id = self.id

        route = self.route

        target = self.target

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "client": client,
                "created_ms": created_ms,
                "id": id,
                "route": route,
                "target": target,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        client = d.pop("client")

        created_ms = d.pop("created_ms")

        id = d.pop("id")

        route = d.pop("route")

        target = d.pop("target")

        session_view = cls(
            client=client,
            created_ms=created_ms,
            id=id,
            route=route,
            target=target,
        )

        session_view.additional_properties = d
        return session_view

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
